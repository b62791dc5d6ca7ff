"""Chatterbox (chatterbox-tts 0.1.7) with real streaming and per-request voice conditionals.

Loading goes through the package's own `from_local` / `from_pretrained` (original, Turbo or
Multilingual class). Synthesis does not use the package's `generate`: that stores the voice on
the shared model (`self.conds`) and returns only when all audio is made. Instead, per request:
T3 tokens come one by one from `t3_stream.speech_tokens`, and `ChunkDecoder` runs S3Gen on them
in chunks while T3 goes on. The voice's `Conditionals` travel with the call.

Random state: T3 samples with a per-request generator. S3Gen draws its flow noise and vocoder
excitation from torch's global generator deep inside the package, so each S3Gen call runs under
one lock after `torch.manual_seed(seed of this request and chunk)`. That makes every request
reproducible from its seed and independent of what runs beside it; the cost is that S3Gen calls
of concurrent requests take turns (T3, the larger share, still runs in parallel). Within a request
T3 runs in its own thread, ahead of the decoding, so generation never waits for S3Gen.

The package's Perth watermark is applied by `generate` to whole clips only; streamed chunks
here are not watermarked.
"""

from __future__ import annotations

import contextlib
import io
import logging
import queue
import threading
from collections.abc import Iterator
from dataclasses import replace

import numpy as np

from services.common.audio import resample
from services.tts.config import ChatterboxSettings

from .base import BuiltinVoice, CancelToken, Engine, EngineError, SynthesisParams
from .chunk_decoder import TOKEN_SAMPLES, ChunkDecoder
from .t3_stream import SamplingSettings, speech_tokens

log = logging.getLogger("voice.tts.chatterbox")

S3GEN_SR = 24000
S3_SR = 16000
SPEECH_VOCAB = 6561  # valid S3 speech tokens are below this
_DONE = object()


def resolve_device(setting: str) -> str:
    import torch

    if setting == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if setting.startswith("cuda") and not torch.cuda.is_available():
        raise EngineError("bad_device", f"TTS_DEVICE={setting} but torch sees no CUDA device")
    return setting


def load_model(settings: ChatterboxSettings, device: str):
    """The package's own loader for the chosen variant (from_local, or the hub when no dir).
    Its print()s (the watermarker announcing itself) are kept out of the JSON log stream."""
    with contextlib.redirect_stdout(io.StringIO()):
        return _load(settings, device)


def _load(settings: ChatterboxSettings, device: str):
    if settings.variant == "turbo":
        from chatterbox.tts_turbo import ChatterboxTurboTTS as cls
    elif settings.variant == "multilingual":
        from chatterbox.mtl_tts import ChatterboxMultilingualTTS as cls
    else:
        from chatterbox.tts import ChatterboxTTS as cls
    if settings.model_dir:
        with checkpoint_assets(settings.model_dir):
            return cls.from_local(settings.model_dir, device)
    return cls.from_pretrained(device)


@contextlib.contextmanager
def checkpoint_assets(model_dir) -> Iterator[None]:
    """Lets a self-contained local checkpoint serve the files the multilingual loader fetches on
    its own: building its MTLTokenizer downloads the Cangjie table through
    `hf_hub_download(cache_dir=<checkpoint dir>)` (5 retries, ~25 s, when offline) and the pkuseg
    Chinese segmenter from GitHub into $PKUSEG_HOME (a hard error when offline). When the
    checkpoint directory already holds the table in that hub-cache layout, the hub is put in
    offline mode while loading, so the cached copy is used without a network round trip; when it
    holds `pkuseg/`, the segmenter is read from there. A checkpoint without them (a real snapshot)
    loads exactly as the package does, downloads included. Both settings are restored after."""
    from pathlib import Path

    root = Path(model_dir)
    saved: list[tuple[object, str, object]] = []
    if any(root.glob("models--*/snapshots/*/Cangjie5_TC.json")):
        from huggingface_hub import constants

        saved.append((constants, "HF_HUB_OFFLINE", constants.HF_HUB_OFFLINE))
        constants.HF_HUB_OFFLINE = True
    if (root / "pkuseg").is_dir():
        from spacy_pkuseg.config import config

        saved.append((config, "pkuseg_home", config.pkuseg_home))
        config.pkuseg_home = str(root / "pkuseg")
    try:
        yield
    finally:
        for owner, name, value in reversed(saved):
            setattr(owner, name, value)


def _quiet_libraries() -> None:
    import warnings

    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    for name in ("chatterbox", "diffusers", "root"):
        logging.getLogger(name).setLevel(logging.ERROR)
    # the meanflow decoder (Turbo's S3Gen) print()s a line and draws a tqdm bar on every decode;
    # only these two names of that one module are replaced, the computation is untouched
    from chatterbox.models.s3gen import flow_matching

    flow_matching.print = lambda *args, **kwargs: None
    flow_matching.tqdm = lambda iterable, **kwargs: iterable


class ChatterboxEngine(Engine):
    name = "chatterbox"
    sample_rate = S3GEN_SR
    clones_voices = True

    def __init__(self, settings: ChatterboxSettings, model=None) -> None:
        import torch

        _quiet_libraries()
        if settings.torch_threads:
            torch.set_num_threads(settings.torch_threads)
        self.settings = settings
        # checked before the (long) load: an unknown language id would be spelled out as text
        if settings.variant == "multilingual":
            from chatterbox.mtl_tts import SUPPORTED_LANGUAGES

            if settings.language.lower() not in SUPPORTED_LANGUAGES:
                raise EngineError(
                    "bad_language",
                    f"TTS_LANGUAGE={settings.language} is not one of the multilingual model's languages: "
                    + ", ".join(sorted(SUPPORTED_LANGUAGES)),
                )
        self.device = resolve_device(settings.device)
        self.model = model if model is not None else load_model(settings, self.device)
        self.variant = settings.variant
        self.turbo = settings.variant == "turbo"
        self.fingerprint = f"chatterbox-{settings.variant}:{settings.model_dir or 'hub'}"
        self._s3_lock = threading.Lock()
        # the checkpoint's conds.pt (None when it has none); read here, never written: the package's
        # `generate` path that uses model.conds is not used, conditionals go with each request
        self._builtin = self.model.conds
        self.crossfade = int(S3GEN_SR * settings.crossfade_ms / 1000)

    # ------------------------------------------------------------------ voices
    def builtin_voices(self) -> list[BuiltinVoice]:
        return [BuiltinVoice("default", "Chatterbox built-in voice")] if self._builtin is not None else []

    def builtin_conditionals(self, voice_id: str) -> object:
        if voice_id != "default" or self._builtin is None:
            raise KeyError(voice_id)
        return self._builtin

    def compute_conditionals(self, reference: np.ndarray, sample_rate: int) -> object:
        """`prepare_conditionals` of the package, returning the result instead of storing it."""
        import torch
        from chatterbox.models.t3.modules.cond_enc import T3Cond
        from chatterbox.tts import Conditionals

        model = self.model
        ref24 = resample(np.asarray(reference, dtype=np.float32), sample_rate, S3GEN_SR)
        if self.turbo:
            ref24 = np.asarray(model.norm_loudness(ref24, S3GEN_SR), dtype=np.float32)
        ref16 = resample(ref24, S3GEN_SR, S3_SR)
        with torch.inference_mode():
            gen = model.s3gen.embed_ref(ref24[: model.DEC_COND_LEN], S3GEN_SR, device=self.device)
            prompt_tokens = None
            if plen := model.t3.hp.speech_cond_prompt_len:
                prompt_tokens, _ = model.s3gen.tokenizer.forward([ref16[: model.ENC_COND_LEN]], max_len=plen)
                prompt_tokens = torch.atleast_2d(prompt_tokens).to(self.device)
            ve_embed = torch.from_numpy(model.ve.embeds_from_wavs([ref16], sample_rate=S3_SR))
            ve_embed = ve_embed.mean(axis=0, keepdim=True).to(self.device)
            t3_cond = T3Cond(
                speaker_emb=ve_embed, cond_prompt_speech_tokens=prompt_tokens, emotion_adv=0.5 * torch.ones(1, 1, 1)
            ).to(device=self.device)
        return Conditionals(t3_cond, gen)

    def serialize(self, conditionals: object) -> bytes:
        import torch

        t3 = {k: v for k, v in conditionals.t3.__dict__.items() if k != "cond_prompt_speech_emb"}
        buf = io.BytesIO()
        torch.save({"t3": t3, "gen": conditionals.gen}, buf)
        return buf.getvalue()

    def deserialize(self, blob: bytes) -> object:
        import torch
        from chatterbox.models.t3.modules.cond_enc import T3Cond
        from chatterbox.tts import Conditionals

        data = torch.load(io.BytesIO(blob), map_location=self.device, weights_only=True)
        return Conditionals(T3Cond(**data["t3"]), data["gen"])

    # ------------------------------------------------------------------ synthesis
    def text_tokens(self, text: str):
        import torch.nn.functional as F

        model = self.model
        hp = model.t3.hp
        if self.turbo:
            from chatterbox.tts_turbo import punc_norm

            return model.tokenizer(punc_norm(text), return_tensors="pt").input_ids
        if self.variant == "multilingual":
            from chatterbox.mtl_tts import punc_norm

            tokens = model.tokenizer.text_to_tokens(punc_norm(text), language_id=self.settings.language.lower())
        else:
            from chatterbox.tts import punc_norm

            tokens = model.tokenizer.text_to_tokens(punc_norm(text))
        tokens = F.pad(tokens, (1, 0), value=hp.start_text_token)
        return F.pad(tokens, (0, 1), value=hp.stop_text_token)

    def _decode(self, gen: dict, seed: int, tokens: list[int], finalize: bool) -> np.ndarray:
        """S3Gen on `tokens` (flow + vocoder + the package's 40 ms fade-in), seeded, one at a time.
        Always a finalized decode (see chunk_decoder); `finalize` only adds Turbo's silence tail."""
        import torch

        s3gen = self.model.s3gen
        if finalize and self.turbo:
            from chatterbox.models.s3gen.const import S3GEN_SIL

            tokens = tokens + [S3GEN_SIL] * 3  # as ChatterboxTurboTTS.generate: a short silence tail
        with self._s3_lock, torch.inference_mode():
            torch.manual_seed(seed)
            token_tensor = torch.tensor([tokens], dtype=torch.long, device=self.device)
            mels = s3gen.flow_inference(
                token_tensor, ref_dict=dict(gen), n_cfm_timesteps=self.settings.cfm_steps or None, finalize=True
            )
            wav, _ = s3gen.hift_inference(mels.to(dtype=s3gen.dtype), None)
            fade = s3gen.trim_fade
            wav[:, : len(fade)] *= fade
            audio = wav[0].float().cpu().numpy()
        if finalize and self.turbo:
            audio = audio[: (len(tokens) - 3) * TOKEN_SAMPLES]
        return audio

    def stream(
        self, text: str, conditionals: object, params: SynthesisParams, cancel: CancelToken
    ) -> Iterator[np.ndarray]:
        return self.stream_with_tokens(text, conditionals, params, cancel, [])

    def stream_with_tokens(
        self, text: str, conditionals: object, params: SynthesisParams, cancel: CancelToken, tokens_out: list[int]
    ) -> Iterator[np.ndarray]:
        """`stream`, also appending each valid speech token to `tokens_out` (tests, benchmarks)."""
        import torch

        params = params.with_seed()
        conds = conditionals
        t3_cond = replace(conds.t3, emotion_adv=params.exaggeration * torch.ones(1, 1, 1, device=self.device))
        settings = self.settings
        sampling = SamplingSettings(
            temperature=params.temperature,
            cfg_weight=0.0 if self.turbo else params.cfg_weight,
            repetition_penalty=settings.repetition_penalty,
            min_p=0.0 if self.turbo else settings.min_p,
            top_p=0.95 if self.turbo and settings.top_p >= 1.0 else settings.top_p,
            top_k=1000 if self.turbo else 0,
            max_new_tokens=settings.max_new_tokens,
            penalty_last=self.turbo,
        )
        generator = torch.Generator(device=self.device).manual_seed(int(params.seed))
        chunk = params.chunk_tokens or settings.chunk_tokens
        decoder = ChunkDecoder(
            decode=lambda toks, final, k: self._decode(conds.gen, _chunk_seed(params.seed, k), toks, final),
            first=min(settings.first_chunk_tokens, chunk),
            chunk=chunk,
            context=settings.context_tokens,
            crossfade=self.crossfade,
        )
        # T3 runs ahead in its own thread while this one decodes: S3Gen of chunk k overlaps T3 of
        # chunk k+1. Tokens are still handed to the decoder one by one, so the decode boundaries
        # (and with them the audio) do not depend on timing.
        text_tokens = self.text_tokens(text)
        produced: queue.Queue = queue.Queue()
        stop = CancelToken(parent=cancel)

        def produce() -> None:
            try:
                with torch.inference_mode():
                    for token in speech_tokens(
                        self.model.t3, t3_cond, text_tokens, sampling, generator, stop, turbo=self.turbo
                    ):
                        produced.put(token)
            except BaseException as exc:  # re-raised in the consuming thread
                produced.put(exc)
            finally:
                produced.put(_DONE)

        producer = threading.Thread(target=produce, name="tts-t3", daemon=True)
        producer.start()
        try:
            with torch.inference_mode():
                while True:
                    item = produced.get()
                    if item is _DONE:
                        break
                    if isinstance(item, BaseException):
                        raise item
                    if cancel.cancelled:
                        return
                    if item >= SPEECH_VOCAB:  # start/stop/padding ids: never audio (drop_invalid_tokens)
                        continue
                    tokens_out.append(item)
                    audio = decoder.push(item)
                    if cancel.cancelled:
                        return
                    if audio is not None and len(audio):
                        yield audio
                if cancel.cancelled:
                    return
                tail = decoder.finish()
                if len(tail):
                    yield tail
        finally:
            stop.cancel()
            producer.join()


def _chunk_seed(seed: int | None, index: int) -> int:
    return (int(seed or 0) * 1_000_003 + index * 7919) % (2**31 - 1)
