"""Greedy and beam search over the model protocol only (`encode`, `step`, `reorder_state`).

Nothing here knows which architecture it drives. Sentences that finish leave the batch at once
(their rows are dropped from the decoding state), so a batch costs what its longest unfinished
sentence costs, not more. Attention is not carried through the beam: alignments for any output
come from a teacher-forced pass over it (see `s2s.alignment`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from s2s.models.seq2seq import Seq2Seq, reorder_state
from s2s.vocab import BOS, EOS, NEVER_OUTPUT


@dataclass
class Hypothesis:
    tokens: list[int]  # without BOS and EOS
    score: float  # sum of log-probabilities (EOS included) / length ** length_penalty


def normalise(logprob: float, length: int, length_penalty: float) -> float:
    return logprob / (length ** length_penalty)


def coverage_penalty(coverage: Tensor, beta: float) -> Tensor:
    """beta * sum_j log(min(attention received by source token j, 1)) (Wu et al. 2016), per row;
    padding positions hold 1 and add nothing. Clamped so an unattended token is not -inf."""
    return beta * coverage.clamp(min=1e-10, max=1.0).log().sum(-1)


def max_lengths(src_mask: Tensor, a: float, b: int, cap: int = 0) -> Tensor:
    """Per-sentence output budget a * source length + b (at most `cap` when given)."""
    limit = (src_mask.sum(1).float() * a + b).long()  # (B,)
    return limit.clamp(max=cap) if cap else limit


def output_lprobs(logits: Tensor) -> Tensor:
    """Log-probabilities of the next token, (rows, V); padding and the start token can never
    be chosen. They are removed after normalising, so scores stay the model's own (as Hugging
    Face's beam search applies `bad_words_ids`)."""
    lprobs = torch.log_softmax(logits.float(), dim=-1)
    lprobs[:, NEVER_OUTPUT] = float("-inf")
    return lprobs


def force_eos(lprobs: torch.Tensor, rows: torch.Tensor) -> None:
    """At the length budget only EOS remains (with a finite score, whatever the model said)."""
    if rows.any():
        eos = lprobs[rows, EOS].clamp(min=-1e4)
        lprobs[rows] = float("-inf")
        lprobs[rows, EOS] = eos


@torch.no_grad()
def greedy(model: Seq2Seq, src: Tensor, src_mask: Tensor, max_len: Tensor,
           length_penalty: float = 1.0) -> list[list[Hypothesis]]:
    """The most probable next token at every step, until EOS or the length budget."""
    state = model.encode(src, src_mask)
    batch = src.size(0)
    alive = torch.arange(batch, device=src.device)  # rows of the original batch still decoding
    prev = torch.full((batch,), BOS, dtype=torch.long, device=src.device)
    tokens: list[list[int]] = [[] for _ in range(batch)]
    logprob = [0.0] * batch
    results: list[list[Hypothesis]] = [[] for _ in range(batch)]
    step = 0
    while alive.numel():
        logits, state, _ = model.step(state, prev)
        lprobs = output_lprobs(logits)  # (b, V)
        force_eos(lprobs, max_len[alive] <= step + 1)
        best_lp, prev = lprobs.max(dim=-1)  # (b,)
        done = prev == EOS
        for row, (i, tok, lp, fin) in enumerate(zip(alive.tolist(), prev.tolist(),
                                                    best_lp.tolist(), done.tolist())):
            logprob[i] += lp
            if fin:
                results[i] = [Hypothesis(tokens[i], normalise(logprob[i], step + 1, length_penalty))]
            else:
                tokens[i].append(tok)
        if done.any():
            keep = (~done).nonzero().squeeze(1)
            alive, prev = alive[keep], prev[keep]
            state = reorder_state(state, keep)
        step += 1
    return results


@torch.no_grad()
def beam_search(model: Seq2Seq, src: Tensor, src_mask: Tensor, max_len: Tensor, beam: int,
                length_penalty: float = 1.0, n_best: int = 1,
                coverage_beta: float = 0.0) -> list[list[Hypothesis]]:
    """Batched beam search; a sentence is done once it has `beam` finished hypotheses.

    Each step ranks the 2*beam best extensions of every sentence: finished ones (ending in EOS)
    among its top `beam` are kept aside, the best `beam` unfinished ones continue. With beam 1
    this is exactly greedy search. With `coverage_beta` > 0 and a model whose attention keeps
    coverage, a finished hypothesis' score also gets Wu et al.'s coverage penalty.
    """
    device, batch = src.device, src.size(0)
    state = reorder_state(model.encode(src, src_mask),
                          torch.arange(batch, device=device).repeat_interleave(beam))
    alive = torch.arange(batch, device=device)  # original sentence of each live block
    scores = torch.full((batch, beam), float("-inf"), device=device)
    scores[:, 0] = 0.0  # all beams start identical: expand only the first
    history = torch.full((batch * beam, 0), BOS, dtype=torch.long, device=device)
    prev = torch.full((batch * beam,), BOS, dtype=torch.long, device=device)
    finished: list[list[Hypothesis]] = [[] for _ in range(batch)]
    step = 0
    while alive.numel():
        b = alive.numel()
        logits, state, _ = model.step(state, prev)
        lprobs = output_lprobs(logits)  # (b*K, V)
        vocab = lprobs.size(1)
        coverage = model.coverage(state) if coverage_beta else None  # (b*K, S) after this step
        force_eos(lprobs, (max_len[alive] <= step + 1).repeat_interleave(beam))
        total = (scores[:, :, None] + lprobs.view(b, beam, vocab)).view(b, beam * vocab)
        top_scores, top_ids = total.topk(min(2 * beam, beam * vocab), dim=1)  # (b, 2K)
        origin = torch.div(top_ids, vocab, rounding_mode="floor")  # (b, 2K) beam of origin
        token = top_ids % vocab  # (b, 2K)
        is_eos = token == EOS

        # finished hypotheses: EOS among each sentence's top K candidates
        for r, c in (is_eos[:, :beam] & (top_scores[:, :beam] > float("-inf"))).nonzero().tolist():
            sent = alive[r].item()
            if len(finished[sent]) < beam:
                row = r * beam + origin[r, c]
                score = normalise(top_scores[r, c].item(), step + 1, length_penalty)
                if coverage is not None:
                    score += coverage_penalty(coverage[row], coverage_beta).item()
                finished[sent].append(Hypothesis(history[row].tolist(), score))
        done = torch.tensor([len(finished[s]) >= beam for s in alive.tolist()], device=device)
        done |= max_len[alive] <= step + 1  # the forced EOS step finished every beam

        # the best K unfinished continuations carry on
        rank = torch.where(is_eos, float("inf"), torch.arange(top_ids.size(1), device=device,
                                                              dtype=torch.float))
        pick = rank.argsort(dim=1, stable=True)[:, :beam]  # (b, K) columns of unfinished ones
        scores = top_scores.gather(1, pick)
        new_token = token.gather(1, pick)  # (b, K)
        source_row = (origin.gather(1, pick) + torch.arange(b, device=device)[:, None] * beam).view(-1)
        keep = (~done).nonzero().squeeze(1)
        if keep.numel() < b:  # finished sentences leave: their rows go from every entry
            scores, new_token = scores[keep], new_token[keep]
            source_row = source_row.view(b, beam)[keep].view(-1)
            alive = alive[keep]
            blocks = (keep[:, None] * beam + torch.arange(beam, device=device)).view(-1)
            constant = {k: v for k, v in state.items() if k.startswith(model.constant_state)}
            state = {**state, **reorder_state(constant, blocks)} if constant else state
        history = torch.cat([history[source_row], new_token.view(-1, 1)], dim=1)
        prev = new_token.view(-1)
        # beams move within their sentence: entries that are equal across its beams stay put
        state = reorder_state(state, source_row, skip=model.constant_state)
        step += 1
    return [sorted(hyps, key=lambda h: -h.score)[:n_best] for hyps in finished]


def decode(model: Seq2Seq, src: Tensor, src_mask: Tensor, max_len: Tensor, beam: int = 1,
           length_penalty: float = 1.0, n_best: int = 1,
           coverage_beta: float = 0.0) -> list[list[Hypothesis]]:
    """Greedy search for beam 1 (and n_best 1), beam search otherwise."""
    if beam <= 1 and n_best <= 1:
        return greedy(model, src, src_mask, max_len, length_penalty)
    return beam_search(model, src, src_mask, max_len, max(beam, n_best), length_penalty, n_best,
                       coverage_beta)
