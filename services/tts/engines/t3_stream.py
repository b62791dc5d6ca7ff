"""T3 speech-token generation one token at a time, so audio can be decoded while it runs.

This is `T3.inference` (and `T3.inference_turbo`) of chatterbox-tts 0.1.7 rewritten as a
generator over the model's own modules (cond encoder, embeddings, Llama/GPT-2 backbone with a KV
cache, speech head), with the same sampling: classifier-free guidance (cond + w·(cond − uncond),
the unconditional row has its text embedding zeroed), repetition penalty, temperature, min-p and
top-p (for Turbo: top-k and top-p, and its order — temperature, top-k, top-p, then the repetition
penalty). Differences, on purpose:
- nothing is stored on the shared T3 (the package's `inference` sets `t3.patched_model` and, for
  the multilingual model, hooks an alignment analyser into the shared backbone's attention — not
  safe with concurrent requests, so that hallucination guard is not used here);
- sampling uses a per-request `torch.Generator`, so concurrent requests never share random state;
- a cancel flag is checked before every token;
- `cfg_weight=0` runs a batch of one (the package's loop assumes the CFG batch of two).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import torch
from transformers.generation.logits_process import (
    MinPLogitsWarper,
    RepetitionPenaltyLogitsProcessor,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from .base import CancelToken


class SamplingSettings:
    def __init__(
        self,
        temperature: float,
        cfg_weight: float,
        repetition_penalty: float,
        min_p: float,
        top_p: float,
        top_k: int = 0,
        max_new_tokens: int = 1000,
        penalty_last: bool = False,
    ) -> None:
        self.temperature = temperature
        self.cfg_weight = cfg_weight
        self.max_new_tokens = max_new_tokens
        # T3.inference applies the repetition penalty first; T3.inference_turbo after the warpers
        self.penalty_last = penalty_last
        self.processors = []
        if repetition_penalty != 1.0:
            self.processors.append(RepetitionPenaltyLogitsProcessor(penalty=float(repetition_penalty)))
        self.warpers = []
        if top_k > 0:
            self.warpers.append(TopKLogitsWarper(top_k))
        if min_p > 0.0:
            self.warpers.append(MinPLogitsWarper(min_p=min_p))
        if top_p < 1.0:
            self.warpers.append(TopPLogitsWarper(top_p=top_p))


def speech_tokens(
    t3,
    t3_cond,
    text_tokens: torch.Tensor,
    sampling: SamplingSettings,
    generator: torch.Generator,
    cancel: CancelToken,
    turbo: bool = False,
) -> Iterator[int]:
    """Yields speech token ids (stop token excluded) as T3 samples them. `text_tokens` is (1, L),
    already framed the way the variant expects (start/stop text tokens for original/multilingual)."""
    hp = t3.hp
    device = t3.device
    use_cfg = not turbo and sampling.cfg_weight > 0.0
    text_tokens = torch.atleast_2d(text_tokens).to(dtype=torch.long, device=device)
    if use_cfg:
        text_tokens = torch.cat([text_tokens, text_tokens], dim=0)
    batch = text_tokens.size(0)
    # a private copy: prepare_conditioning caches the prompt embedding on the T3Cond it is given
    cond = replace(t3_cond, cond_prompt_speech_emb=None)
    start = torch.full((batch, 1), hp.start_speech_token, dtype=torch.long, device=device)
    embeds, _ = t3.prepare_input_embeds(
        t3_cond=cond, text_tokens=text_tokens, speech_tokens=start, cfg_weight=sampling.cfg_weight if use_cfg else 0.0
    )
    if not turbo:
        # as T3.inference: a second start-of-speech embedding (position 0) after the prompt
        bos = t3.speech_emb(start[:1]) + t3.speech_pos_emb.get_fixed_embedding(0)
        embeds = torch.cat([embeds, bos.expand(batch, -1, -1)], dim=1)

    history = start[:1].clone()  # what the repetition penalty sees: start token + generated tokens
    out = t3.tfmr(inputs_embeds=embeds, use_cache=True, return_dict=True)
    past = out.past_key_values
    hidden = out.last_hidden_state[:, -1, :]
    cfg = torch.tensor(sampling.cfg_weight, device=device)
    for step in range(sampling.max_new_tokens):
        if cancel.cancelled:
            return
        logits = t3.speech_head(hidden).float()
        if use_cfg:
            logits = logits[0:1] + cfg * (logits[0:1] - logits[1:2])
        if not sampling.penalty_last:
            for proc in sampling.processors:
                logits = proc(history, logits)
        if sampling.temperature != 1.0:
            logits = logits / max(sampling.temperature, 1e-4)
        for warp in sampling.warpers:
            logits = warp(history, logits)
        if sampling.penalty_last:
            for proc in sampling.processors:
                logits = proc(history, logits)
        probs = torch.softmax(logits, dim=-1)
        token = torch.multinomial(probs, num_samples=1, generator=generator)  # (1, 1)
        token_id = int(token.item())
        if token_id == hp.stop_speech_token:
            return
        yield token_id
        history = torch.cat([history, token], dim=1)
        step_embed = t3.speech_emb(token)
        if not turbo:
            step_embed = step_embed + t3.speech_pos_emb.get_fixed_embedding(step + 1)
        if use_cfg:
            step_embed = torch.cat([step_embed, step_embed], dim=0)
        out = t3.tfmr(inputs_embeds=step_embed, past_key_values=past, use_cache=True, return_dict=True)
        past = out.past_key_values
        hidden = out.last_hidden_state[:, -1, :]
