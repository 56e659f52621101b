"""Focal self-attention over a grid of patches (Yang et al. 2021, https://arxiv.org/abs/2107.00641).

Full self-attention over N patches costs N^2; focal self-attention lets each patch attend to its
neighbours at fine granularity and to distant regions through coarse, pooled summaries, so a
patch has a bounded number of fine keys however large the image. As in the paper, the grid is
cut into query windows of `window` x `window` patches, and the patches of a window share their
keys (one batched attention per window):

- level 0, fine: every patch of the window and of a margin of window // 2 patches around it;
- level l = 1 .. levels, coarse: the grid averaged over sub-windows of window * 2^(l-1) patches;
  the window attends to the 3 x 3 sub-windows around its own, and at the last level to all of
  them, so that every patch still sees the whole image.

Keys of every level share one softmax. Averaging keys and values over a sub-window equals
projecting the averaged patches (the projections are affine, an average's weights sum to 1).
The cost per layer is N x (fine keys + 9 per middle level + the last level's N / (window 2^(L-1))^2)
instead of N x N. With a window covering the whole grid and no levels it is exactly multi-head
self-attention (same parameters, same weights).

Weights, when recorded, are what full self-attention's would be: (B, H, N, N) over the patches,
each coarse key's weight spread evenly over the patches it summarises, so every row sums to 1 and
a `Recorder` or attention rollout reads them like any self-attention. They are computed only while
recording (`s2s.attention.record_attention`); otherwise the fused SDPA kernel runs per window,
or, on a grid so small that the whole bank of keys is at most 4 times a window's keys, once for all
patches with each patch's window keys as a mask (the same result, faster there).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from s2s.attention.core import Attended, masked_softmax, recording
from s2s.attention.multihead import MultiHeadAttention
from s2s.errors import UserError

DENSE_BANK_RATIO = 4  # one masked attention over the bank while it is at most 4x a window's keys
Box = tuple[int, int, int, int]  # (top, left, bottom, right) in patches, bottom and right exclusive


class FocalSelfAttention(MultiHeadAttention):
    """Focal self-attention of the patches of an (h, w) grid, given as tokens (B, h * w, D) in
    row-major order. Projections as in `MultiHeadAttention` (whose parameters it shares by name).
    """

    def __init__(self, dim: int, heads: int, grid: tuple[int, int], window: int, levels: int,
                 dropout: float = 0.0):
        super().__init__(dim, heads, dropout=dropout)
        if window < 1 or levels < 0:
            raise UserError(f"focal attention needs window >= 1 and levels >= 0, "
                            f"got window {window} and levels {levels}")
        self.grid, self.window, self.levels = tuple(grid), window, levels
        h, w = self.grid
        self.pools = [window * 2 ** level for level in range(levels)]  # sub-window side per level
        self.cells = [(-(-h // s), -(-w // s)) for s in self.pools]  # (rows, columns) of summaries
        sizes = [h * w] + [rows * cols for rows, cols in self.cells]
        self.starts = [sum(sizes[:i]) for i in range(len(sizes) + 1)]  # bank offsets; last = empty
        for level, (pool, (rows, cols)) in enumerate(zip(self.pools, self.cells)):
            inside = torch.ones(h, w)  # how many real patches each summary averages
            inside = F.pad(inside, (0, cols * pool - w, 0, rows * pool - h))
            counts = inside.view(rows, pool, cols, pool).sum((1, 3)).view(rows * cols, 1)
            self.register_buffer(f"counts_{level}", counts, persistent=False)
        queries, keys, valid, slots = self._tables()
        self.register_buffer("query_index", queries, persistent=False)  # (windows, W*W)
        self.register_buffer("key_index", keys, persistent=False)  # (windows, K) into the bank
        self.register_buffer("key_valid", valid, persistent=False)  # (windows, K)
        self.register_buffer("patch_slot", slots, persistent=False)  # (N,) into windows x W*W
        self.dense = self.starts[-1] + 1 <= DENSE_BANK_RATIO * keys.size(1)  # see `_dense`
        window_of_patch = slots // (window * window)  # (N,)
        allowed = torch.zeros(h * w, self.starts[-1] + 1, dtype=torch.bool)
        allowed.scatter_(1, keys[window_of_patch], valid[window_of_patch])
        self.register_buffer("dense_mask", allowed, persistent=False)  # (N, bank size + 1)

    def _window_keys(self, top: int, left: int) -> list[int]:
        """Bank indices of the keys of the window at patch (top, left); -1 is "no key"."""
        h, w = self.grid
        margin, size = self.window // 2, self.window
        keys = [r * w + c if 0 <= r < h and 0 <= c < w else -1
                for r in range(top - margin, top + size + margin)
                for c in range(left - margin, left + size + margin)]
        for level, (pool, (rows, cols)) in enumerate(zip(self.pools, self.cells)):
            start = self.starts[level + 1]
            if level == self.levels - 1:  # the coarsest level: every summary
                keys += range(start, start + rows * cols)
                continue
            row, col = top // pool, left // pool
            keys += [start + r * cols + c if 0 <= r < rows and 0 <= c < cols else -1
                     for r in range(row - 1, row + 2) for c in range(col - 1, col + 2)]
        return keys

    def _tables(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        h, w = self.grid
        size, empty = self.window, self.starts[-1]
        tops, lefts = range(0, h, size), range(0, w, size)
        queries = [[r * w + c if r < h and c < w else h * w  # h * w: the empty query slot
                    for r in range(top, top + size) for c in range(left, left + size)]
                   for top in tops for left in lefts]
        keys = torch.tensor([self._window_keys(top, left) for top in tops for left in lefts])
        rows, cols = torch.arange(h).repeat_interleave(w), torch.arange(w).repeat(h)
        window = (rows // size) * len(lefts) + cols // size
        slots = window * size * size + (rows % size) * size + cols % size  # (N,)
        return torch.tensor(queries), keys.clamp(min=0).where(keys >= 0, empty), keys >= 0, slots

    def _bank(self, tokens: Tensor) -> Tensor:
        """Patches (B, N, D), then each level's summaries, then one empty slot, per head:
        (B, H, M + 1, Dh)."""
        b, n, d = tokens.shape
        (h, w), parts = self.grid, [tokens]
        for level, (pool, (rows, cols)) in enumerate(zip(self.pools, self.cells)):
            grid = F.pad(tokens.view(b, h, w, d), (0, 0, 0, cols * pool - w, 0, rows * pool - h))
            sums = grid.view(b, rows, pool, cols, pool, d).sum((2, 4)).view(b, rows * cols, d)
            parts.append(sums / getattr(self, f"counts_{level}"))  # partial sub-windows: real patches
        return self.split_heads(torch.cat([*parts, tokens.new_zeros(b, 1, d)], 1))

    @staticmethod
    def _gather(x: Tensor, index: Tensor) -> Tensor:
        """Rows `index` (windows, length) of x (B, H, rows, Dh) -> (B, H, windows, length, Dh)."""
        b, heads, _, dim = x.shape
        return x.index_select(2, index.flatten()).view(b, heads, *index.shape, dim)

    def forward(self, x: Tensor, memory: Tensor | None = None, mask: Tensor | None = None,
                prepared=None, state=None) -> Attended:
        """x (B, h * w, D) -> (B, h * w, D); every patch is real, so `mask` must be None."""
        if (memory is not None and memory is not x) or mask is not None or prepared is not None:
            raise ValueError("focal attention is self-attention over whole patch grids: "
                             "no memory, mask or prepared keys")
        b, n, d = x.shape
        if n != self.grid[0] * self.grid[1]:
            raise ValueError(f"focal attention built for a {self.grid} grid got {n} patches")
        if self.dense:
            return self._dense(x)
        q = self.split_heads(torch.cat([self.q_proj(x), x.new_zeros(b, 1, d)], 1))  # (B, H, N + 1, Dh)
        queries = self._gather(q, self.query_index)  # (B, H, windows, W*W, Dh)
        keys = self._gather(self._bank(self.k_proj(x)), self.key_index)  # (B, H, windows, K, Dh)
        values = self._gather(self._bank(self.v_proj(x)), self.key_index)
        allowed = self.key_valid[:, None, :]  # (windows, 1, K)
        dropout = self.dropout if self.training else 0.0
        if recording():
            scores = queries @ keys.transpose(-1, -2) / math.sqrt(self.head_dim)
            weights = masked_softmax(scores, allowed)  # (B, H, windows, W*W, K)
            out = F.dropout(weights, dropout, self.training) @ values
        else:
            weights = None  # the fused kernel takes 4-D inputs: heads x windows as one axis
            flat = [t.flatten(1, 2) for t in (queries, keys, values)]  # (B, H * windows, ., Dh)
            allowed = allowed.expand(self.heads, *allowed.shape).flatten(0, 1)[None]
            out = F.scaled_dot_product_attention(*flat, attn_mask=allowed, dropout_p=dropout)
            out = out.view(queries.shape)  # (B, H, windows, W*W, Dh)
        out = out.flatten(2, 3).index_select(2, self.patch_slot)  # (B, H, N, Dh)
        out = out.transpose(1, 2).reshape(b, n, d)  # (B, N, D)
        return Attended(self.out_proj(out), None if weights is None else self.spread(weights))

    def _dense(self, x: Tensor) -> Attended:
        """The same attention as one masked attention of every patch over the whole bank: each
        patch's row of `dense_mask` allows exactly its window's keys. On a small grid this is a
        few larger products instead of thousands of tiny ones, and nothing is gathered; it
        multiplies by the masked keys too, so it pays only while the bank is small."""
        b, n, d = x.shape
        q = self.split_heads(self.q_proj(x))  # (B, H, N, Dh)
        keys, values = self._bank(self.k_proj(x)), self._bank(self.v_proj(x))  # (B, H, M + 1, Dh)
        dropout = self.dropout if self.training else 0.0
        if recording():
            scores = q @ keys.transpose(-1, -2) / math.sqrt(self.head_dim)  # (B, H, N, M + 1)
            weights = masked_softmax(scores, self.dense_mask)
            out = F.dropout(weights, dropout, self.training) @ values
            weights = weights @ self.members().to(weights)  # (B, H, N, N) over the patches
        else:
            weights = None
            out = F.scaled_dot_product_attention(q, keys, values, attn_mask=self.dense_mask,
                                                 dropout_p=dropout)
        out = out.transpose(1, 2).reshape(b, n, d)  # (B, N, D)
        return Attended(self.out_proj(out), weights)

    def members(self) -> Tensor:
        """(bank size + 1, N): row i is how bank entry i spreads over the patches it summarises
        (a patch: itself; a summary: evenly over its sub-window; the empty slot: nowhere)."""
        h, w = self.grid
        table = torch.zeros(self.starts[-1] + 1, h, w)
        table[: h * w].view(h * w, h * w).fill_diagonal_(1.0)
        for level, (pool, (rows, cols)) in enumerate(zip(self.pools, self.cells)):
            for r in range(rows):
                for c in range(cols):
                    cell = table[self.starts[level + 1] + r * cols + c]
                    cell[r * pool:(r + 1) * pool, c * pool:(c + 1) * pool] = 1.0
                    cell /= cell.sum()
        return table.flatten(1)

    def spread(self, weights: Tensor) -> Tensor:
        """Window weights (B, H, windows, W*W, K) -> patch-to-patch weights (B, H, N, N)."""
        members = self.members().to(weights)[self.key_index]  # (windows, K, N)
        full = torch.einsum("bhwqk,wkn->bhwqn", weights, members)  # (B, H, windows, W*W, N)
        b, heads = full.shape[:2]
        return full.reshape(b, heads, -1, full.size(-1))[:, :, self.patch_slot]  # (B, H, N, N)

    def regions(self, row: int, col: int) -> list[tuple[int, list[Box]]]:
        """What patch (row, col) attends to, level by level: [(0, [the fine region]),
        (1, [each level-1 sub-window]), ...], as patch boxes clipped to the grid."""
        h, w = self.grid
        if not (0 <= row < h and 0 <= col < w):
            raise UserError(f"patch {row},{col} is outside the {h}x{w} patch grid")
        window = int(self.patch_slot[row * w + col]) // self.window ** 2
        members = self.members().view(-1, h, w)
        found: dict[int, list[Box]] = {}
        for key, valid in zip(self.key_index[window].tolist(), self.key_valid[window].tolist()):
            if not valid:
                continue
            level = max(i for i, start in enumerate(self.starts[:-1]) if key >= start)
            rows, cols = members[key].nonzero(as_tuple=True)
            found.setdefault(level, []).append((int(rows.min()), int(cols.min()),
                                                int(rows.max()) + 1, int(cols.max()) + 1))
        fine = found.pop(0)
        union = (min(b[0] for b in fine), min(b[1] for b in fine),
                 max(b[2] for b in fine), max(b[3] for b in fine))
        return [(0, [union])] + sorted(found.items())
