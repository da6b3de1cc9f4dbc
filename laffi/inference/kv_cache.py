"""A key/value cache that reserves room for the tokens still to come, so a decoding step writes its keys in place.

Usage:
    cache = reserve(enc["past_key_values"], tokens=suffix + max_new_tokens)   # a prefilled DynamicCache
    cache = empty_cache(max_new_tokens, model.config)                            # or nothing prefilled yet
    model.generate(**enc, past_key_values=cache, ...)     # the same numbers, no copy of the cache per step

Why (profiled: one Ask on the example passage, bfloat16, 2 cores): transformers' DynamicLayer grows by
torch.cat at every step, copying each layer's whole cache of keys and values once per generated token: 18 % of
the Ask's CPU time, second only to the linear layers, and the share grows with the rows of a batch (a room's 32
rows of a 400-token passage copy ~330 MB per step). StaticCache needs fixed shapes and a maximum length up front
(and gives up DynamicCache's row selection, which the shared-prefix prefill uses); this layer keeps DynamicLayer's
behaviour and only pre-allocates: its keys and values are views of larger buffers, each step written in place.
A buffer that fills up (more tokens than reserved) grows by doubling, so no length is ever refused. Unlike
DynamicLayer, an update after a crop writes over the cropped positions of the buffer, which keys handed out
before the crop still view: nothing here keeps them (the prefix cache stores copies), but assisted decoding would.
"""

from __future__ import annotations

from functools import partial

from transformers.cache_utils import DynamicCache, DynamicLayer


class ReservedLayer(DynamicLayer):
    """A DynamicLayer whose keys and values are views of buffers with `spare` positions free after them."""

    def __init__(self, spare: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.spare = max(0, int(spare))
        self.key_buffer = self.value_buffer = None

    def owns(self) -> bool:
        """Whether keys and values are still views of the buffers: a crop keeps them so, a row selection or a
        reorder (new tensors) does not, and the next update then starts new buffers from them."""
        kb, vb, k, v = self.key_buffer, self.value_buffer, self.keys, self.values
        return (kb is not None and k is not None and v is not None and k.data_ptr() == kb.data_ptr()
                and v.data_ptr() == vb.data_ptr() and k.shape[:2] == kb.shape[:2] and k.stride() == kb.stride()
                and v.shape[:2] == vb.shape[:2] and v.stride() == vb.stride())

    def update(self, key_states, value_states, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        have = self.get_seq_length()
        need = have + key_states.shape[-2]
        owned = self.owns()
        if not owned or need > self.key_buffer.shape[-2]:
            held = self.key_buffer.shape[-2] if owned else 0
            size = max(need + self.spare, 2 * held)  # spare once; past it, doubling (amortised copies)
            b, h = key_states.shape[:2]
            kb = key_states.new_empty((b, h, size, key_states.shape[-1]))
            vb = value_states.new_empty((b, value_states.shape[1], size, value_states.shape[-1]))
            if have:
                kb[:, :, :have].copy_(self.keys)
                vb[:, :, :have].copy_(self.values)
            self.key_buffer, self.value_buffer = kb, vb
        self.key_buffer[:, :, have:need].copy_(key_states)
        self.value_buffer[:, :, have:need].copy_(value_states)
        self.keys, self.values = self.key_buffer[:, :, :need], self.value_buffer[:, :, :need]
        return self.keys, self.values

    def batch_select_indices(self, indices) -> None:
        """Only the rows `indices`, kept in (smaller) buffers with the same room after them: one copy."""
        if not self.owns():
            return super().batch_select_indices(indices)
        have = self.get_seq_length()
        self.key_buffer, self.value_buffer = self.key_buffer[indices], self.value_buffer[indices]
        self.keys, self.values = self.key_buffer[:, :, :have], self.value_buffer[:, :, :have]


def reserve(cache: DynamicCache, tokens: int) -> DynamicCache:
    """The cache with each plain DynamicLayer replaced by a ReservedLayer holding the same keys and values and
    room for `tokens` more positions (in place; returned for convenience). Other kinds of layers (sliding
    windows, quantised) are left as they are; layers the cache adds later are reserved too."""
    for i, layer in enumerate(cache.layers):
        if type(layer) is not DynamicLayer:
            continue
        reserved = ReservedLayer(spare=tokens)
        if layer.is_initialized and layer.get_seq_length():
            reserved.update(layer.keys, layer.values)
        cache.layers[i] = reserved
    if cache.layer_class_to_replicate is DynamicLayer:
        cache.layer_class_to_replicate = partial(ReservedLayer, spare=tokens)
    return cache


def empty_cache(tokens: int, config=None) -> DynamicCache:
    """An empty cache whose full-attention layers reserve `tokens` positions each, beyond what their first update
    brings (the prompt). config: the model's, so that its other kinds of layers (sliding windows) are made as
    transformers makes them; without it every layer is made as the model asks for it."""
    return reserve(DynamicCache(config=config), tokens)
