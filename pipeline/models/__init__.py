"""Base Whisper models: resolve a spec to a local Hugging Face dir; import CTranslate2 Whisper models.

resolve_model(spec, cache_dir=None) -> Path    builtin (tiny.en, base), local HF/CT2 dir, or hub id
builtin_ct2_dir(name, cache_dir=None) -> Path  the original CTranslate2 weights of a builtin
import_ct2(ct2_dir, out_dir) -> ImportSummary  one CT2 Whisper dir -> Hugging Face files
merge.merge_adapter(model, adapter_dir)        a peft adapter merged into its base (the only merge)
"""

from pipeline.models.ct2_import import ImportSummary, import_ct2
from pipeline.models.resolve import BUILTINS, builtin_ct2_dir, locate, resolve_model

__all__ = ["BUILTINS", "ImportSummary", "builtin_ct2_dir", "import_ct2", "locate", "resolve_model"]
