"""A learned audio encoder (transformers) on the stimulus's sound, streamed into the features contract.

Two families, told apart by the model's config:

- wav2vec2-style encoders of the raw waveform (``Wav2Vec2Model``, HuBERT, WavLM,
  data2vec-audio, ...: any ``AutoModel`` whose forward takes ``input_values``),
  with their ``AutoFeatureExtractor`` (per-window zero-mean / unit-variance when the
  extractor says ``do_normalize``);
- Whisper (``model_type: whisper``): the encoder of ``WhisperModel`` on the
  extractor's log-mel ``input_features``. Whisper's encoder only takes its full
  context (``chunk_length``, 30 s), so each window is zero-padded to it, as the
  extractor does, and only the encoder frames covering the window's own samples
  are kept (2 mel hops per frame: 20 ms).

Windows. The sound is decoded on the video's clock exactly as for the log-mel
space (:mod:`neurovid.features.audio`: original file, mono mean, resampled to the
extractor's ``sampling_rate``), and cut into windows of ``window_s`` centred every
``hop_s`` (row ``k`` at ``k * hop_s``, zeros outside the audio, rows while the
centre is inside the video). Each window is run through the model on its own and
the hidden states of each configured layer (``hidden_states`` indices: 0 = the
input to the first transformer block, -1 = the last block's output) are averaged
over the model frames of the window. Per-window runs, rather than one long run cut
afterwards, make a row depend on its window only (so it does not change with the
batch or the video's length), and fit Whisper's fixed context.

Device, precision, batch sizing, weight loading and provenance are the learned
extractors' (:mod:`neurovid.features.runtime`): bf16 autocast on CUDA, fp32 and
deterministic on CPU.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from neurovid.errors import InputError
from neurovid.features import runtime as rt
from neurovid.features.audio import (
    centred_windows,
    clock_duration,
    iter_audio,
    open_audio,
    row_count,
)
from neurovid.io import PathLike

FIELD = "features.audio_encoder"
#: config model types whose encoder takes log-mel ``input_features`` with a fixed context.
WHISPER_TYPES = ("whisper",)


@dataclass
class AudioEncoder:
    """A loaded audio encoder, its feature extractor and what the windows need to know."""

    encoder: torch.nn.Module
    extractor: Any
    family: str  # "wav2vec2" | "whisper"
    model_class: str
    revision: str
    sample_rate: int
    hidden: int
    n_hidden: int  # entries of hidden_states (blocks + 1)

    def frames_of(self, samples: int) -> int:
        """Model frames a window of ``samples`` gives (InputError when too short / long)."""
        if self.family == "whisper":
            context = int(self.extractor.n_samples)
            if samples > context:
                raise InputError(
                    None,
                    f"window_s is {samples / self.sample_rate:g} s but Whisper's encoder sees at "
                    f"most {context / self.sample_rate:g} s (its feature extractor's chunk_length).",
                    "lower features.audio_encoder.window_s.",
                    field=f"{FIELD}.window_s",
                )
            mel_frames = math.ceil(samples / int(self.extractor.hop_length))
            return (mel_frames - 1) // 2 + 1
        frames = int(self.encoder._get_feat_extract_output_lengths(samples))
        if frames < 1:
            raise InputError(
                None,
                f"window_s is {samples / self.sample_rate:g} s, shorter than one frame of "
                f"{self.model_class}'s convolutional front end.",
                "raise features.audio_encoder.window_s (e.g. 1 s).",
                field=f"{FIELD}.window_s",
            )
        return frames


def load_audio_encoder(model: str) -> AudioEncoder:
    """The encoder (eval mode, fp32) and feature extractor of a hub id or local directory.

    InputError (naming the model and the setting) for a model that is neither
    Whisper nor a waveform encoder taking ``input_values``.
    """
    from transformers import AutoConfig, AutoFeatureExtractor, AutoModel

    field = f"{FIELD}.model"
    config = rt.from_pretrained(AutoConfig.from_pretrained, model, field)
    loaded = rt.from_pretrained(AutoModel.from_pretrained, model, field, dtype=torch.float32)
    if config.model_type in WHISPER_TYPES:
        family, encoder = "whisper", loaded.get_encoder()
    elif "input_values" in inspect.signature(loaded.forward).parameters:
        family, encoder = "wav2vec2", loaded
    else:
        raise InputError(
            model,
            f"{type(loaded).__name__} ({config.model_type}) is not an audio encoder: this space "
            "takes a waveform encoder (forward(input_values): Wav2Vec2, HuBERT, WavLM, ...) or "
            "Whisper.",
            "set features.audio_encoder.model to such a model, e.g. facebook/wav2vec2-base "
            "or openai/whisper-base.",
            field=field,
        )
    extractor = rt.from_pretrained(AutoFeatureExtractor.from_pretrained, model, field)
    return AudioEncoder(
        encoder=encoder.eval(),
        extractor=extractor,
        family=family,
        model_class=type(loaded).__name__,
        revision=rt.weights_revision(model, loaded),
        sample_rate=int(extractor.sampling_rate),
        hidden=int(config.hidden_size),
        n_hidden=int(config.num_hidden_layers) + 1,
    )


def audio_encoder(
    video_path: PathLike,
    out_path: PathLike,
    *,
    model: str,
    clock_video: PathLike | None = None,
    layers: Sequence[int] = (-1,),
    window_s: float = 1.0,
    hop_s: float = 0.5,
    batch_size: int | str = 16,
    device: str = "auto",
    threads: int = 1,
    chunk_s: float = 10.0,
    extra_attrs: Mapping[str, Any] | None = None,
    log: logging.Logger | Callable[[str], Any] | None = None,
) -> dict[str, Any]:
    """Write per-window encoder features of ``video_path``'s sound to ``out_path``; return the attrs.

    ``features`` [T, hidden * len(layers)] float32 (column blocks in the ``layout``
    attr), ``times`` the window centres ``k * hop`` on the video's clock, T = rows
    inside ``clock_video``'s duration (the standardized video; default
    ``video_path``). A video with no audio track raises :class:`InputError` before
    the model is loaded.
    """
    emit = rt.emitter(log)
    track = open_audio(video_path, "audio_encoder")
    runtime = rt.select_runtime(device, threads)
    net = load_audio_encoder(model)
    net.encoder.to(runtime.device)
    layers = rt.check_layers(layers, net.n_hidden, f"{FIELD}.layers")
    sr = net.sample_rate
    width, hop = round(window_s * sr), round(hop_s * sr)
    if hop < 1 or width < 1:
        raise InputError(
            None,
            f"window_s={window_s} and hop_s={hop_s} must each be at least one sample at {sr} Hz.",
            "set positive values.",
            field=f"{FIELD}.hop_s",
        )
    frames = net.frames_of(width)
    key = "input_features" if net.family == "whisper" else "input_values"

    @torch.inference_mode()
    def embed(windows: np.ndarray) -> torch.Tensor:
        inputs = net.extractor(
            list(windows.astype(np.float32)), sampling_rate=sr, return_tensors="pt"
        )
        tensors = {k: runtime.to_device(v) for k, v in inputs.items() if torch.is_tensor(v)}
        with runtime.autocast():
            out = net.encoder(**tensors, output_hidden_states=True)
        return torch.cat(
            [out.hidden_states[layer][:, :frames].float().mean(dim=1) for layer in layers], dim=1
        )

    batch = rt.auto_batch_size(lambda n: embed(np.zeros((n, width))), runtime, batch_size)
    duration = clock_duration(clock_video or video_path)
    n_rows = row_count(duration, hop, sr)
    emit(
        f"{video_path}: {model} ({net.model_class}, {net.family}) on {runtime.device} "
        f"({runtime.dtype_name}); {track.codec} {track.sample_rate} Hz {track.layout} -> mono "
        f"{sr} Hz; windows of {width} samples every {hop} ({frames} model frames, mean), "
        f"layers {layers}, batch {batch}; {n_rows} rows over {duration:.3f} s"
    )
    progress = rt.Progress(emit, f"{video_path} (windows)")
    windows = centred_windows(
        iter_audio(track, sr, chunk_s=chunk_s), width=width, hop=hop, n_rows=n_rows, batch=batch
    )
    with rt.FeatureWriter(out_path, net.hidden * len(layers)) as writer:
        for first, chunk in rt.prefetch(windows):
            features = embed(chunk).cpu().numpy()
            writer.append(features, np.arange(first, first + len(chunk)) * hop / sr)
            progress.update(writer.rows)
        progress.finish(writer.rows)
        attrs = {
            "extractor": "audio_encoder",
            "model_id": model,
            "revision": net.revision,
            "model_class": net.model_class,
            "encoder_class": type(net.encoder).__name__,
            "family": net.family,
            "input": key,
            "layer": list(layers),
            "pooling": ["mean"],
            "layout": rt.layout(layers, ["mean"], net.hidden),
            "dtype": runtime.dtype_name,
            "device": runtime.device.type,
            "batch_size": batch,
            "fps": sr / hop,
            "duration": duration,
            "n_rows": writer.rows,
            "sample_rate": sr,
            "window_samples": width,
            "hop_samples": hop,
            "frames_per_window": frames,
            "clock": "time 0 = the original video's first video frame (the standardized video's clock); row k centred at k * hop_samples / sample_rate s",
            "mono": "mean of the channels after resampling (swresample)",
            "audio": track.describe(),
            **dict(extra_attrs or {}),
        }
        writer.close(attrs)
    return attrs
