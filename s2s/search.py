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

from s2s.models.seq2seq import Seq2Seq, State, reorder_state
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


class BeamSearch:
    """A beam search over one batch of sentences, one step at a time.

    Creating it encodes the batch; `step` (or `advance`, given the model's output for `prev`)
    extends every live sentence by one token and returns those that are done, with the caller's
    tag for each. Several searches can step together (`step_together`), so a server can start a
    new batch while older ones finish (continuous batching) without padding one batch's state
    to another's.

    Each step ranks the 2*beam best extensions of every sentence: finished ones (ending in EOS)
    among its top `beam` are kept aside, the best `beam` unfinished ones continue; a sentence is
    done once it has `beam` finished hypotheses. With beam 1 this is exactly greedy search. With
    `coverage_beta` > 0 and a model whose attention keeps coverage, a finished hypothesis' score
    also gets Wu et al.'s coverage penalty.
    """

    def __init__(self, model: Seq2Seq, src: Tensor, src_mask: Tensor, max_len: Tensor, beam: int,
                 length_penalty: float = 1.0, n_best: int = 1, coverage_beta: float = 0.0,
                 tags: list | None = None):
        device, batch = src.device, src.size(0)
        self.model, self.beam, self.max_len = model, beam, max_len
        self.length_penalty, self.n_best, self.coverage_beta = length_penalty, n_best, coverage_beta
        self.tags = list(range(batch)) if tags is None else list(tags)
        self.state = reorder_state(model.encode(src, src_mask),
                                   torch.arange(batch, device=device).repeat_interleave(beam))
        self.alive = torch.arange(batch, device=device)  # sentence (index into tags) of each live block
        self.scores = torch.full((batch, beam), float("-inf"), device=device)
        self.scores[:, 0] = 0.0  # all beams start identical: expand only the first
        self.history = torch.full((batch * beam, 0), BOS, dtype=torch.long, device=device)
        self.prev = torch.full((batch * beam,), BOS, dtype=torch.long, device=device)
        self.finished: list[list[Hypothesis]] = [[] for _ in range(batch)]
        self.steps = 0

    def __len__(self) -> int:
        """Sentences still searching."""
        return self.alive.numel()

    def step(self) -> list[tuple[object, list[Hypothesis]]]:
        """One token more for every live sentence; (tag, n-best hypotheses) of those done."""
        logits, state, _ = self.model.step(self.state, self.prev)
        return self.advance(logits, state)

    def advance(self, logits: Tensor, state: State) -> list[tuple[object, list[Hypothesis]]]:
        """`step` given the model's logits (rows, V) for `prev` and its state after them."""
        model, beam, device, step = self.model, self.beam, self.scores.device, self.steps
        alive, finished, b = self.alive, self.finished, self.alive.numel()
        lprobs = output_lprobs(logits)  # (b*K, V)
        vocab = lprobs.size(1)
        coverage = model.coverage(state) if self.coverage_beta else None  # (b*K, S) after this step
        force_eos(lprobs, (self.max_len[alive] <= step + 1).repeat_interleave(beam))
        total = (self.scores[:, :, None] + lprobs.view(b, beam, vocab)).view(b, beam * vocab)
        top_scores, top_ids = total.topk(min(2 * beam, beam * vocab), dim=1)  # (b, 2K)
        origin = torch.div(top_ids, vocab, rounding_mode="floor")  # (b, 2K) beam of origin
        token = top_ids % vocab  # (b, 2K)
        is_eos = token == EOS

        # finished hypotheses: EOS among each sentence's top K candidates
        for r, c in (is_eos[:, :beam] & (top_scores[:, :beam] > float("-inf"))).nonzero().tolist():
            sent = alive[r].item()
            if len(finished[sent]) < beam:
                row = r * beam + origin[r, c]
                score = normalise(top_scores[r, c].item(), step + 1, self.length_penalty)
                if coverage is not None:
                    score += coverage_penalty(coverage[row], self.coverage_beta).item()
                finished[sent].append(Hypothesis(self.history[row].tolist(), score))
        done = torch.tensor([len(finished[s]) >= beam for s in alive.tolist()], device=device)
        done |= self.max_len[alive] <= step + 1  # the forced EOS step finished every beam

        # the best K unfinished continuations carry on
        rank = torch.where(is_eos, float("inf"), torch.arange(top_ids.size(1), device=device,
                                                              dtype=torch.float))
        pick = rank.argsort(dim=1, stable=True)[:, :beam]  # (b, K) columns of unfinished ones
        scores = top_scores.gather(1, pick)
        new_token = token.gather(1, pick)  # (b, K)
        source_row = (origin.gather(1, pick) + torch.arange(b, device=device)[:, None] * beam).view(-1)
        out = []
        keep = (~done).nonzero().squeeze(1)
        if keep.numel() < b:  # finished sentences leave: their rows go from every entry
            out = [(self.tags[s], sorted(finished[s], key=lambda h: -h.score)[:self.n_best])
                   for s in alive[done].tolist()]
            scores, new_token = scores[keep], new_token[keep]
            source_row = source_row.view(b, beam)[keep].view(-1)
            self.alive = alive[keep]
            blocks = (keep[:, None] * beam + torch.arange(beam, device=device)).view(-1)
            constant = {k: v for k, v in state.items() if k.startswith(model.constant_state)}
            state = {**state, **reorder_state(constant, blocks)} if constant else state
        self.history = torch.cat([self.history[source_row], new_token.view(-1, 1)], dim=1)
        self.prev, self.scores = new_token.view(-1), scores
        # beams move within their sentence: entries that are equal across its beams stay put
        self.state = reorder_state(state, source_row, skip=model.constant_state)
        self.steps += 1
        return out


def step_together(model: Seq2Seq, searches: list[BeamSearch]) -> list[tuple[object, list[Hypothesis]]]:
    """One step of several searches (each with sentences left) as one forward pass where the
    model can (`Seq2Seq.step_many`); (tag, n-best hypotheses) of the sentences done."""
    outputs = model.step_many([s.state for s in searches], [s.prev for s in searches])
    return [done for search, (logits, state) in zip(searches, outputs)
            for done in search.advance(logits, state)]


@torch.no_grad()
def beam_search(model: Seq2Seq, src: Tensor, src_mask: Tensor, max_len: Tensor, beam: int,
                length_penalty: float = 1.0, n_best: int = 1,
                coverage_beta: float = 0.0) -> list[list[Hypothesis]]:
    """Batched beam search (see `BeamSearch`); n-best lists in input order."""
    search = BeamSearch(model, src, src_mask, max_len, beam, length_penalty, n_best, coverage_beta)
    results: list[list[Hypothesis]] = [[] for _ in range(src.size(0))]
    while len(search):
        for i, hyps in search.step():
            results[i] = hyps
    return results


def decode(model: Seq2Seq, src: Tensor, src_mask: Tensor, max_len: Tensor, beam: int = 1,
           length_penalty: float = 1.0, n_best: int = 1,
           coverage_beta: float = 0.0) -> list[list[Hypothesis]]:
    """Greedy search for beam 1 (and n_best 1), beam search otherwise."""
    if beam <= 1 and n_best <= 1:
        return greedy(model, src, src_mask, max_len, length_penalty)
    return beam_search(model, src, src_mask, max_len, max(beam, n_best), length_penalty, n_best,
                       coverage_beta)
