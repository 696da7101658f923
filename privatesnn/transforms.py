"""Exact graph rewrites.

``fold_average_pooling``: an average pool of spikes feeding a convolution or (through Flatten) a
linear layer is folded into that layer, exactly: the layer then reads binary spikes (accumulates,
not multiply-accumulates, on hardware) and the network has no pooling layer, which lava-dl netx
cannot load anyway. For a ``kp x kp`` pool (stride kp, no padding) followed by a conv with kernel k,
stride s, padding p, the folded conv has kernel ``k*kp``, stride ``s*kp``, padding ``p*kp`` and
weights ``W[.., d, e] / kp^2`` repeated over each ``kp x kp`` block. The map size must be divisible
by ``kp``; otherwise the pool is left in place.
"""

from __future__ import annotations


from .graph import AvgPool, Conv, Flatten, Graph, Linear


def _foldable(graph: Graph, pool: AvgPool) -> bool:
    kh, kw = pool.kernel
    c, h, w = graph[pool.inputs[0]].shape
    return (kh == kw and tuple(pool.stride) == (kh, kw) and tuple(pool.padding) == (0, 0)
            and h % kh == 0 and w % kw == 0 and len(graph.consumers(pool.name)) == 1)


def fold_average_pooling(graph: Graph) -> tuple[Graph, list[str]]:
    """Return a new graph with foldable average pools folded, and the names of the folded pools."""
    g = graph.copy()
    folded: list[str] = []
    for pool in [n for n in g if isinstance(n, AvgPool) and type(n) is AvgPool]:
        if not _foldable(g, pool):
            continue
        kp = pool.kernel[0]
        user = g.consumers(pool.name)[0]
        if isinstance(user, Conv) and user.groups == 1:
            user.weight = user.weight.repeat_interleave(kp, 2).repeat_interleave(kp, 3) / kp ** 2
            user.stride = (user.stride[0] * kp, user.stride[1] * kp)
            user.padding = (user.padding[0] * kp, user.padding[1] * kp)
            user.inputs = list(pool.inputs)
        elif isinstance(user, Flatten) and len(g.consumers(user.name)) == 1 and isinstance(g.consumers(user.name)[0], Linear):
            lin = g.consumers(user.name)[0]
            c, h, w = g[pool.inputs[0]].shape
            wt = lin.weight.view(lin.weight.shape[0], c, h // kp, w // kp)
            lin.weight = (wt.repeat_interleave(kp, 2).repeat_interleave(kp, 3) / kp ** 2).reshape(lin.weight.shape[0], -1)
            user.inputs = list(pool.inputs)
        else:
            continue
        del g.nodes[pool.name]
        folded.append(pool.name)
    g.validate()
    return g, folded
