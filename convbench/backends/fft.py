"""FFT convolution (placeholder while being written)."""

from convbench.backends import Backend, register


@register
class FFTBackend(Backend):
    name = "fft"

    def check(self, args):
        return "fft: not implemented yet"
