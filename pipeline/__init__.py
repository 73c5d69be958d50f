"""dictune: adapt a Whisper speech-to-text model to one dictation domain with LoRA, and prove the gain."""

from pipeline.config import Config, load_config
from pipeline.errors import ConfigError, DictuneError
from pipeline.manifest import Record, Reject, read_manifest, write_manifest

__version__ = "0.1.0"

__all__ = [
    "Config",
    "ConfigError",
    "DictuneError",
    "Record",
    "Reject",
    "load_config",
    "read_manifest",
    "write_manifest",
]
