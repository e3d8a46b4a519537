"""Winograd convolution (placeholder while being written)."""

from convbench.backends import Backend, register


@register
class WinogradBackend(Backend):
    name = "winograd"

    def check(self, args):
        return "winograd: not implemented yet"
