"""Batched T3 decoding: every candidate of a chunk in one decoding loop.

chatterbox-tts 0.1.7's `T3.inference` decodes one candidate at a time and is launch-bound
(about 45 speech tokens a second on an H100, whatever the model's size would allow): each
step is a forward pass over two rows (classifier-free guidance), a host sync to test for the
stop token, and attention maps it does not need. All candidates of a chunk share the text
and the voice, so their prompts are identical and they can decode together: 2N rows, a
conditional and an unconditional one per candidate, in one forward pass per step.

Each candidate samples with noise from its own seeded generator (the exponential race,
argmax(p / E) with E ~ Exp(1), which draws exactly from p), so its tokens depend on its seed
alone, not on which other candidates share its batch (on an H100 too: identical over 200
tokens alone or in batches of 2 and 3). The host looks for stop tokens every
`check_every` steps, not every step. A round lasts as long as its longest take: once half
the takes have stopped, the others get 1.5 times the longest stopped one (never less than
`runaway_floor` tokens, a usual reading of the text), and a take still going then is a
runaway, returned without its stop token for the gates to judge. The prompt, guidance,
repetition penalty, temperature, min-p and top-p are those of the library's loop.
"""

from typing import Any

import torch


def decode(
    t3: Any,
    t3_cond: Any,
    text_tokens: torch.Tensor,
    seeds: list[int],
    *,
    max_new_tokens: int,
    temperature: float,
    cfg_weight: float,
    repetition_penalty: float,
    min_p: float,
    top_p: float,
    stop_on_eos: bool = True,
    check_every: int = 16,
    runaway_floor: int | None = None,
) -> list[torch.Tensor]:
    """Speech tokens for each seed; `text_tokens` is one row with start and stop tokens.
    Each returned row ends at (and includes) its stop token, if it produced one; with
    `runaway_floor`, rows that run far past the stopped half are cut (see above)."""
    from chatterbox.models.t3.inference.t3_hf_backend import T3HuggingfaceBackend
    from transformers.generation.logits_process import (
        MinPLogitsWarper,
        RepetitionPenaltyLogitsProcessor,
        TopPLogitsWarper,
    )

    n, device, hp = len(seeds), t3.device, t3.hp
    backend = T3HuggingfaceBackend(
        config=t3.cfg,
        llama=t3.tfmr,
        speech_enc=t3.speech_emb,
        speech_head=t3.speech_head,
        alignment_stream_analyzer=None,
    )
    pair = torch.cat([text_tokens, text_tokens]).to(device=device, dtype=torch.long)
    start = torch.full((2, 1), hp.start_speech_token, dtype=torch.long, device=device)
    prompt, _ = t3.prepare_input_embeds(
        t3_cond=t3_cond, text_tokens=pair, speech_tokens=start, cfg_weight=cfg_weight
    )
    bos = t3.speech_emb(start[:1]) + t3.speech_pos_emb.get_fixed_embedding(0)
    rows = torch.cat([prompt, bos.expand(2, -1, -1)], dim=1).repeat(n, 1, 1)  # c,u,c,u,...

    def step(embeds: torch.Tensor, past: Any) -> Any:
        return backend(
            inputs_embeds=embeds,
            past_key_values=past,
            use_cache=True,
            output_attentions=False,
            output_hidden_states=True,
            return_dict=True,
        )

    penalty = RepetitionPenaltyLogitsProcessor(penalty=float(repetition_penalty))
    keep_min_p, keep_top_p = MinPLogitsWarper(min_p=min_p), TopPLogitsWarper(top_p=top_p)
    generators = [torch.Generator(device=device).manual_seed(seed) for seed in seeds]
    generated = torch.full((n, 1), hp.start_speech_token, dtype=torch.long, device=device)
    stopped = torch.zeros(n, dtype=torch.bool, device=device)
    lengths = torch.zeros(n, dtype=torch.long, device=device)  # tokens up to each stop
    output = step(rows, None)
    for i in range(max_new_tokens):
        logits = output.logits[:, -1, :]
        cond, uncond = logits[0::2], logits[1::2]
        logits = cond + cfg_weight * (cond - uncond)
        logits = penalty(generated, logits)
        if temperature != 1.0:
            logits = logits / temperature
        logits = keep_top_p(generated, keep_min_p(generated, logits))
        probs = torch.softmax(logits.float(), dim=-1)
        race = torch.stack(
            [torch.empty_like(probs[0]).exponential_(generator=g) for g in generators]
        )
        token = torch.argmax(probs / race, dim=-1, keepdim=True)
        generated = torch.cat([generated, token], dim=1)
        if stop_on_eos:
            now = token.squeeze(1) == hp.stop_speech_token
            lengths = torch.where(now & ~stopped, i + 1, lengths)
            stopped |= now
            if (i + 1) % check_every == 0:
                done = int(stopped.sum())  # the host sync, once per check_every steps
                if done == n:
                    break
                if runaway_floor is not None and 2 * done >= n:
                    limit = max(runaway_floor, int(1.5 * int(lengths.max())))
                    if i + 1 >= limit:
                        break
        embed = t3.speech_emb(token) + t3.speech_pos_emb.get_fixed_embedding(i + 1)
        output = step(embed.repeat_interleave(2, dim=0), output.past_key_values)
    return [_until_stop(row[1:], hp.stop_speech_token) for row in generated]


def _until_stop(row: torch.Tensor, stop: int) -> torch.Tensor:
    ends = torch.nonzero(row == stop)
    return row[: int(ends[0]) + 1] if ends.numel() else row
