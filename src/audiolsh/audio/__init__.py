"""Audio input: decoding files to mono float32, finding audio files, synthetic test signals."""

from audiolsh.audio import synth
from audiolsh.audio.decode import (
    AUDIO_EXTENSIONS,
    SILENCE_PEAK,
    AudioInfo,
    content_hash,
    find_audio,
    info,
    load,
)

__all__ = [
    "AUDIO_EXTENSIONS",
    "SILENCE_PEAK",
    "AudioInfo",
    "content_hash",
    "find_audio",
    "info",
    "load",
    "synth",
]
