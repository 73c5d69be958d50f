"""Decoding Whisper: models in, transcripts out.

hf.py              Transcriber (batched transformers generate, prompts, encoder states) and the hf engine
ct2.py             the ct2 engine (faster-whisper / CTranslate2)
engines.py         the engine interface (decode_chunks, decode_sequential) and load_engine
longform.py        audio of any length -> timed segments (VAD chunks or the engine's own long-form loop)
batch.py           many audio files and manifests -> report text, JSON and subtitles (`dictune transcribe`)
subtitles.py       SubRip and WebVTT text from timed segments
encoder_states.py  the base encoder's outputs on sets of clips, stored and shared between systems
"""
