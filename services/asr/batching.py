"""Several short clips (turns of different sessions) in ONE CTranslate2 encode + generate call.

`WhisperModel.transcribe` takes one audio per call; CTranslate2's Whisper takes a batch. This
module is the batched path the transcriber uses when several stream requests wait at once: it
follows faster-whisper's own `BatchedInferencePipeline` (same feature extraction, prompt, segment
splitting and word alignment helpers of faster-whisper 1.2.1), but keeps one clip per request
and detects the language per clip. What batching gives up, by design:
- one decoding temperature (the first of the schedule), no quality fallback;
- no prompt / previous text (stream turns have none);
- word splitting and alignment use the first clip's language tokenizer.
Clips must be at most 30 s (Whisper's window); longer requests run alone.

Short windows: Whisper was trained on 30 s windows, but CTranslate2's encoder takes a shorter mel
input, and its cost grows with the input (a 3 s turn encodes in ~15 ms instead of ~450 ms on two
CPU cores). `window_frames` sets the mel length (100 frames per second) every clip is padded to;
None keeps Whisper's 3000. How much padding past the speech keeps the words equal to the 30 s
window is measured by `python -m bench.asr_window` (docs/asr.md, "Turn taking and latency").
"""

from __future__ import annotations

import math

import numpy as np

from .transcript import SAMPLE_RATE

MAX_CLIP_S = 30.0
FULL_WINDOW_FRAMES = 3000
PREPEND_PUNCTUATIONS = "\"'“¿([{-"
APPEND_PUNCTUATIONS = "\"'.。,，!！?？:：”)]}、"


def transcribe_batch(
    model,
    clips: list[np.ndarray],
    languages: list[str | None],
    word_timestamps: bool,
    beam_size: int,
    temperature: float,
    max_new_tokens: int,
    window_frames: int | None = None,
    prefixes: list[str | None] | None = None,
) -> list[dict]:
    """→ per clip: {"language", "language_probability", "segments": [dict(start, end, text, tokens,
    avg_logprob, no_speech_prob, compression_ratio, words?)]} with times relative to the clip."""
    from faster_whisper.audio import pad_or_trim
    from faster_whisper.tokenizer import Tokenizer
    from faster_whisper.transcribe import get_compression_ratio, get_suppressed_tokens

    frames = min(FULL_WINDOW_FRAMES, window_frames or FULL_WINDOW_FRAMES)
    features = np.stack([pad_or_trim(model.feature_extractor(clip)[..., :-1], frames) for clip in clips])
    encoder_output = model.encode(features)

    multilingual = model.model.is_multilingual
    detected = None
    if multilingual and any(lang is None for lang in languages):
        detected = model.model.detect_language(encoder_output)
    resolved: list[tuple[str, float]] = []
    for i, lang in enumerate(languages):
        if lang is not None:
            resolved.append((lang, 1.0))
        elif detected is not None:
            token, prob = detected[i][0]
            resolved.append((token[2:-2], float(prob)))
        else:
            resolved.append(("en", 1.0))

    tokenizers = [Tokenizer(model.hf_tokenizer, multilingual, task="transcribe", language=lang) for lang, _ in resolved]
    # a prefix (words already written for the clip's first seconds, services/asr/context.py) is
    # decoded without timestamps: the text after it has no segment start of its own
    prefixes = prefixes or [None] * len(clips)
    prompts = [
        model.get_prompt(tok, previous_tokens=[], without_timestamps=bool(prefix), prefix=prefix or None)
        for tok, prefix in zip(tokenizers, prefixes, strict=True)
    ]
    max_length = min(model.max_length, max(len(p) for p in prompts) + max_new_tokens)
    results = model.model.generate(
        encoder_output,
        prompts,
        beam_size=beam_size,
        patience=1,
        length_penalty=1,
        max_length=max_length,
        suppress_blank=True,
        suppress_tokens=get_suppressed_tokens(tokenizers[0], [-1]),
        return_scores=True,
        return_no_speech_prob=True,
        sampling_temperature=temperature,
        repetition_penalty=1,
        no_repeat_ngram_size=0,
    )

    segmented: list[list[dict]] = []
    segment_sizes: list[int] = []
    # a prompt's text tokens after <|startoftranscript|>: the prefix, or none
    givens = [
        [t for t in prompt[len(tok.sot_sequence) :] if t < tok.eot]
        for tok, prompt in zip(tokenizers, prompts, strict=True)
    ]
    for clip, tok, given, result in zip(clips, tokenizers, givens, results, strict=True):
        duration = len(clip) / SAMPLE_RATE
        tokens = result.sequences_ids[0]
        avg_logprob = result.scores[0] * len(tokens) / (len(tokens) + 1)
        # CTranslate2 returns the prefix with the generated tokens: it is not this clip's text
        if given and tokens[: len(given)] == given:
            tokens = tokens[len(given) :]
        segment_size = min(frames, int(math.ceil(duration) * model.frames_per_second))
        segment_sizes.append(segment_size)
        subsegments, _, _ = model._split_segments_by_timestamps(
            tokenizer=tok,
            tokens=tokens,
            time_offset=0.0,
            segment_size=segment_size,
            segment_duration=duration,
            seek=0,
        )
        segmented.append(
            [
                dict(
                    text=tok.decode(sub["tokens"]),
                    tokens=sub["tokens"],
                    start=sub["start"],
                    end=sub["end"],
                    avg_logprob=float(avg_logprob),
                    no_speech_prob=float(result.no_speech_prob),
                    compression_ratio=get_compression_ratio(tok.decode(sub["tokens"])),
                    seek=0,
                )
                for sub in subsegments
            ]
        )
    if word_timestamps:
        # a prefix is aligned as a segment of its own, so its words are not counted as the clip's
        leads = [[dict(tokens=g, start=0.0, end=0.0, seek=0, text="")] if g else [] for g in givens]
        aligned = [lead + segs for lead, segs in zip(leads, segmented, strict=True)]
        # faster-whisper aligns a batch of non-empty clips; an empty one would break its bookkeeping
        keep = [i for i, segs in enumerate(aligned) if segs]
        if len(keep) == len(aligned):
            model.add_word_timestamps(
                aligned, tokenizers[0], encoder_output, segment_sizes, PREPEND_PUNCTUATIONS, APPEND_PUNCTUATIONS, 0.0
            )
        else:
            for i in keep:  # rare: align the non-empty ones one by one
                single = model.encode(features[i : i + 1])
                model.add_word_timestamps(
                    [aligned[i]],
                    tokenizers[i],
                    single,
                    [segment_sizes[i]],
                    PREPEND_PUNCTUATIONS,
                    APPEND_PUNCTUATIONS,
                    0.0,
                )
    return [
        {"language": lang, "language_probability": prob, "segments": segs}
        for (lang, prob), segs in zip(resolved, segmented, strict=True)
    ]
