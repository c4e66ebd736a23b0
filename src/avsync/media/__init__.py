"""The media layer: sources with exact timestamps, streaming decode, remuxing."""
from .source import (AudioChunk, DecodeOptions, FileSource, MediaInfo, MediaSource, VideoFrame,
                     analysis_size, open_media)

__all__ = ["AudioChunk", "DecodeOptions", "FileSource", "MediaInfo", "MediaSource", "VideoFrame",
           "analysis_size", "open_media"]
