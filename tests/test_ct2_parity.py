"""The imported tiny.en and base against faster-whisper's engine (ctranslate2) on the original CT2 weights.

On the same log-mel features (transformers' front end; the two front ends differ slightly, so features
are computed once and fed to both), greedy decoding must give identical tokens for every clip and the
encoder outputs must agree within 1e-4 relative (||hf - ct2|| / ||ct2|| per clip; measured ~3e-6).
The largest single-element difference is also bounded: a few elements of tiny.en's encoder output are
ill-conditioned in float32 (both engines sit ~4.5e-5 of the max value away from a float64 run, in
opposite directions), so that bound is looser.

Each engine decodes from its own encoder output (computed once: the encoder dominates the run time).
"""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.integration

ENCODER_RTOL = 1e-4  # relative L2 difference per clip
ENCODER_MAX_ELEMENT_RTOL = 1e-3  # largest |difference| / largest |value|
MIN_CLIPS = 10


def _ct2_prompt(generation) -> list[int]:
    """What transformers prepends: start, then language and task on multilingual models, no-timestamps."""
    prompt = [generation.decoder_start_token_id]
    if generation.is_multilingual:
        prompt += [generation.lang_to_id["<|en|>"], generation.task_to_id["transcribe"]]
    return prompt + [generation.no_timestamps_token_id]


def _strip(tokens: list[int], eot: int) -> list[int]:
    return tokens[: tokens.index(eot)] if eot in tokens else tokens


@pytest.fixture(scope="module")
def clip_audio(speech_clips):
    assert len(speech_clips) >= MIN_CLIPS
    return [clip.audio for clip in speech_clips]


@pytest.mark.parametrize("name", ["tiny.en", pytest.param("base", marks=pytest.mark.slow)])
def test_imported_model_matches_faster_whisper(name, request, clip_audio):
    ctranslate2 = pytest.importorskip("ctranslate2")
    import torch
    from transformers import WhisperForConditionalGeneration, WhisperProcessor
    from transformers.modeling_outputs import BaseModelOutput

    from pipeline.models import builtin_ct2_dir

    hf_dir = request.getfixturevalue("tiny_en_dir" if name == "tiny.en" else "base_dir")
    model = WhisperForConditionalGeneration.from_pretrained(hf_dir).eval()
    processor = WhisperProcessor.from_pretrained(hf_dir)
    features = processor.feature_extractor(
        clip_audio, sampling_rate=16000, return_tensors="np"
    ).input_features
    features = np.ascontiguousarray(features, dtype=np.float32)
    ct2 = ctranslate2.models.Whisper(
        str(builtin_ct2_dir(name)), device="cpu", compute_type="float32", intra_threads=1
    )

    encoded_ct2 = np.array(ct2.encode(ctranslate2.StorageView.from_array(features)))
    gen = model.generation_config
    results = ct2.generate(
        ctranslate2.StorageView.from_array(encoded_ct2), [_ct2_prompt(gen)] * len(features), beam_size=1
    )
    tokens_ct2 = [_strip(r.sequences_ids[0], gen.eos_token_id) for r in results]

    with torch.no_grad():
        encoded = model.model.encoder(torch.from_numpy(features)).last_hidden_state
        language = {"language": "en"} if gen.is_multilingual else {}
        generated = model.generate(encoder_outputs=BaseModelOutput(last_hidden_state=encoded), **language)
    tokens_hf = [_strip(row, gen.eos_token_id) for row in generated.tolist()]
    encoded_hf = encoded.numpy()

    diff = encoded_hf - encoded_ct2
    relative = max(float(np.linalg.norm(d) / np.linalg.norm(r)) for d, r in zip(diff, encoded_ct2))
    max_element = float(np.abs(diff).max() / np.abs(encoded_ct2).max())
    equal = sum(a == b for a, b in zip(tokens_hf, tokens_ct2))
    print(
        f"{name}: {equal}/{len(features)} clips with identical greedy tokens; encoder relative difference "
        f"{relative:.1e} (max per clip), largest element {max_element:.1e}"
    )
    assert relative < ENCODER_RTOL
    assert max_element < ENCODER_MAX_ELEMENT_RTOL
    assert all(len(t) > 3 for t in tokens_ct2)  # real transcripts, not empty outputs
    assert tokens_hf == tokens_ct2
    assert equal >= MIN_CLIPS
