"""The soft-mask search's update of its mask in ONE pass over memory (CPU, float32, SGD).

Eager PyTorch spends a pass over the mask (read and write of every entry) on each of: the mask
gradient g * theta, the penalty's gradient (two for the log), the masking of pruned entries, the
optimizer's momentum and update, the projection onto [0, 1]; and one more on theta's gradient g * m.
On LeNet-300-100 (266k mask entries, each weight used only 128 x 3 times per step) these passes cost
as much as a third of the standard step. This C loop does all of them per entry, with the same
arithmetic (torch.optim.SGD's momentum, dampening, Nesterov and weight decay; the penalty's r' from
the regularizer's `native_derivative`), and keeps the momentum buffer where torch.optim.SGD keeps it
(`optimizer.state[mask]["momentum_buffer"]`), so checkpoints are the same and a run may resume on
either path. Compiled on first use by `platform.native`; where that is unavailable (no compiler,
`--native_kernels=off`, another optimizer, CUDA, several processes), the eager step is used.
Equality with the eager step, to float tolerance, is tested in tests/test_soft_mask_native.py.
"""
from __future__ import annotations

import ctypes
from typing import Optional

import torch

from open_lth_concave.concave.regularizers import Regularizer
from open_lth_concave.platform import native

SOURCE = r"""
/* soft-mask search step over one layer's n entries (see open_lth_concave/concave/native_step.py).
   g: dL/d(m*theta) in, theta's gradient g*m (old m) out; m: the mask, updated and projected on [0,1];
   buf: SGD momentum buffer (NULL: no momentum); alive: 1/0 per entry (NULL: all alive).
   Branch-free loop bodies (one per case, below) so that the compiler vectorizes them; on x86-64 Linux
   an AVX2 copy too, chosen at load time where the CPU has it (about twice as fast: the division). */
#if defined(__x86_64__) && defined(__linux__) && defined(__GNUC__)
#define CLONES __attribute__((target_clones("avx2", "default")))
#else
#define CLONES
#endif
static inline float rprime(float m, const float *c) { return RPRIME; }

#define BODY(ALIVE, BUF)                                                                   \
    for (long i = 0; i < n; i++) {                                                         \
        const float mi = m[i], gi = g[i];                                                  \
        float d = gi * th[i] + s * rprime(mi, c) + wd * mi;                                \
        if (ALIVE) d = d * alive[i];                                                       \
        float step = d;                                                                    \
        if (BUF) {                                                                         \
            const float b = first ? d : mu * buf[i] + damp1 * d;                           \
            buf[i] = b;                                                                    \
            step = nesterov ? d + mu * b : b;                                              \
        }                                                                                  \
        const float v = mi - lr * step;                                                    \
        m[i] = v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v);                                    \
        g[i] = gi * mi;                                                                    \
    }

CLONES void soft_mask_step(long n, float *restrict g, const float *restrict th, float *restrict m,
                    float *restrict buf, const float *restrict alive, float s, float wd, float mu,
                    float damp1, int first, int nesterov, float lr, const float *restrict c) {
    if (alive && buf) { BODY(1, 1) }
    else if (alive) { BODY(1, 0) }
    else if (buf) { BODY(0, 1) }
    else { BODY(0, 0) }
}
"""

_F, _P = ctypes.c_float, ctypes.c_void_p
_ARGTYPES = [ctypes.c_long, _P, _P, _P, _P, _P, _F, _F, _F, _F, ctypes.c_int, ctypes.c_int, _F, _P]


def _definer(cls: type, attribute: str) -> Optional[type]:
    return next((k for k in cls.__mro__ if attribute in vars(k)), None)


def expression_for(regularizer: Regularizer) -> Optional[str]:
    """The regularizer's C expression for r', if it describes the derivative this class uses: a subclass
    that overrides `derivative` or `add_derivative_` below the class giving the expression gets None."""
    cls = type(regularizer)
    where = _definer(cls, "native_derivative")
    if where is None or cls.native_derivative is None:
        return None
    for method in ("derivative", "add_derivative_"):
        if not issubclass(where, _definer(cls, method)):
            return None
    return cls.native_derivative


class MaskStep:
    """The compiled step for one regularizer (constants bound); `run` updates one layer."""

    def __init__(self, function, constants: tuple[float, ...]):
        self._function = function
        self._constants = torch.tensor(list(constants) + [0.0] * (4 - len(constants)), dtype=torch.float32)

    @classmethod
    def for_regularizer(cls, regularizer: Regularizer) -> Optional["MaskStep"]:
        expression = expression_for(regularizer)
        constants = regularizer.native_constants() if expression is not None else ()
        if expression is None or len(constants) > 4:
            return None
        lib = native.load("soft_mask_step", SOURCE.replace("RPRIME", expression))
        if lib is None:
            return None
        function = lib.soft_mask_step
        function.argtypes, function.restype = _ARGTYPES, None
        return cls(function, constants)

    def run(self, g: torch.Tensor, theta: torch.Tensor, m: torch.Tensor, buf: Optional[torch.Tensor],
            alive: Optional[torch.Tensor], s: float, wd: float, mu: float, dampening: float, first: bool,
            nesterov: bool, lr: float) -> None:
        """All tensors float32 on the CPU with the same strides, dense (no gaps or overlaps)."""
        self._function(g.numel(), g.data_ptr(), theta.data_ptr(), m.data_ptr(),
                       None if buf is None else buf.data_ptr(), None if alive is None else alive.data_ptr(),
                       s, wd, mu, 1.0 - dampening, int(first), int(nesterov), lr, self._constants.data_ptr())
