"""Passage prefixes kept across calls: a prompt that starts like one already read reuses its keys and values.

Usage:
    cache = PrefixCache(max_bytes=256 * 2**20)
    hit, kv = cache.lookup("sft", token_ids)   # hit: how many leading tokens are cached (0: none), kv: per layer
    cache.store("sft", token_ids, kv)          # kv: [(key, value)] per layer, each (heads, len(token_ids), dim)
    cache.forget("sft")                         # its adapter changed (re-attached): its entries are wrong now

Why (measured in a room: eight participants asking about one passage): the scheduler answers whoever waits in
one call, and within a call questions on one passage read it once per adapter (laffi.inference.prefix). But a
room asks in waves, every call reads the passage again, and so does every stage of an Ask (the answers, then
sft's candidate ranking, then the self-feedback), and every later question on the presenter's passage. Causal
attention makes a prefix's keys and values independent of what follows, so they can be kept: the next prompt
that starts with the same tokens under the same variant computes only its own tail. This is the idea of
SGLang's RadixAttention and vLLM's automatic prefix caching, kept simple: a few long prefixes (passages), found
by their longest common start with the new prompt, evicted least recently used within a byte budget.

The keys are (variant, token ids). A variant's entries are valid while its adapter's weights are those that
computed them: LoadedModel.attach forgets a re-attached variant's entries. The base weights never change.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from laffi.inference.prefix import MIN_SHARED, common_prefix


def _nbytes(kv) -> int:
    return sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in kv)


class PrefixCache:
    """Keys and values of prompt prefixes per variant, least recently used evicted past max_bytes."""

    def __init__(self, max_bytes: int, min_tokens: int = MIN_SHARED):
        self.max_bytes, self.min_tokens = max_bytes, min_tokens
        self._entries: OrderedDict = OrderedDict()  # (variant, tokens) -> kv, least recently used first
        self._bytes = 0
        self._lock = threading.Lock()  # the scheduler's thread computes, but Evaluate's turn may too
        self.hits = self.misses = self.tokens_saved = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def lookup(self, variant: str, tokens: list[int]) -> tuple[int, list | None]:
        """(n, kv): the most leading tokens of `tokens` some entry of this variant holds (n >= min_tokens, else
        (0, None)) and their keys and values, each (heads, n, dim)."""
        best, best_key = 0, None
        with self._lock:
            for key in self._entries:
                if key[0] == variant:
                    n = common_prefix(key[1], tokens)
                    if n > best:
                        best, best_key = n, key
            if best < self.min_tokens:
                self.misses += 1
                return 0, None
            self._entries.move_to_end(best_key)
            self.hits += 1
            self.tokens_saved += best
            kv = self._entries[best_key]
        return best, [(k[:, :best], v[:, :best]) for k, v in kv]

    def store(self, variant: str, tokens: list[int], kv: list) -> None:
        """Keep kv (per layer (key, value), each (heads, len(tokens), dim)) for these tokens, as a radix tree
        would with its leaves cut off: an entry that already covers them is only marked used; one they extend is
        replaced; one that shares most of them (the same passage, another question) is cut back to what the two
        share, since a third question will share that and not either tail."""
        tokens = tuple(tokens)
        if len(tokens) < self.min_tokens or _nbytes(kv) > self.max_bytes:
            return
        with self._lock:
            for key in [k for k in self._entries if k[0] == variant]:
                n = common_prefix(key[1], tokens)
                if n == len(tokens):
                    self._entries.move_to_end(key)
                    return
                if n == len(key[1]):
                    self._bytes -= _nbytes(self._entries.pop(key))
                elif n >= self.min_tokens and 4 * n >= 3 * len(tokens):
                    old = self._entries.pop(key)
                    self._bytes -= _nbytes(old)
                    tokens, kv = tokens[:n], [(k[:, :n].clone(), v[:, :n].clone()) for k, v in old]
            self._entries[(variant, tokens)] = kv
            self._bytes += _nbytes(kv)
            while self._bytes > self.max_bytes:
                _, dropped = self._entries.popitem(last=False)
                self._bytes -= _nbytes(dropped)

    def forget(self, variant: str | None = None) -> None:
        """Drop a variant's entries (every entry when None)."""
        with self._lock:
            for key in [k for k in self._entries if variant is None or k[0] == variant]:
                self._bytes -= _nbytes(self._entries.pop(key))

    def variants(self) -> set[str]:
        """The variants with entries kept."""
        with self._lock:
            return {variant for variant, _ in self._entries}

    def stats(self) -> dict:
        with self._lock:
            return {"entries": len(self._entries), "bytes": self._bytes, "hits": self.hits, "misses": self.misses,
                    "tokens_saved": self.tokens_saved}
