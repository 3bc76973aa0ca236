"""2-D convolution as im2col + one matrix multiply, with col2im for the gradient.

A convolution slides a (C, kh, kw) kernel over the image. im2col ("image to
columns") copies every window the kernel visits into a column, so the whole
convolution becomes one GEMM over all images at once (groups: one GEMM per
group, in a single batched matmul call). With L = OH·OW output pixels:

    cols[g, (c, i, j), (n, oh, ow)] = x_pad[n, g·Cg + c, oh·s + i·d, ow·s + j·d]
    out[g, o, (n, oh, ow)]          = W[g, o, :] @ cols[g]        (Og, K)·(K, N·L)

then ``out`` is reordered to (N, C_out, OH, OW). Putting the batch inside the
columns makes three large GEMMs (forward, and two in backward) instead of N
small ones: BLAS is much faster on large matrices, most of all with threads.

The windows are read through a strided *view* of the padded input (no Python
loop at all); only the copy into ``cols`` touches memory. col2im is the
adjoint: it adds each column entry back to the pixel it came from. Windows
overlap, so entries add up; we loop over the kh·kw kernel positions (9 for a
3x3 kernel), each step one vectorised slice-add over all output pixels.

Backward, with G = ∂L/∂out reordered to (g, Og, N·L):

    ∂L/∂cols = Wᵀ G  -> col2im -> ∂L/∂x
    ∂L/∂W    = G colsᵀ
    ∂L/∂b    = Σ_{n, oh, ow} G

``Im2Col`` and ``Col2Im`` are Functions too, each the other's backward (they are
linear maps, transposes of each other), so the convolution can be
differentiated twice. ``conv2d_reference`` is the plain composite the fused op
is tested against.
"""
from .. import autograd, backend
from ..autograd import Function
from .elementwise import constant


def output_size(size, kernel, stride, padding, dilation):
    """Output length of a sliding window: (size + 2p - d(k - 1) - 1) // s + 1."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


class Conv2d(Function):
    save_inputs = True

    def forward(self, x, weight, *bias, stride, padding, dilation, groups):
        self.geometry = _Geometry(x.shape, weight.shape, stride, padding, dilation, groups)
        g = self.geometry
        self.cols = im2col(x, g)                                       # (groups, K, N·L)
        w = weight.reshape(groups, g.out_per_group, g.k)               # (groups, Og, K)
        out = (w @ self.cols).reshape(g.out_channels, g.n, g.oh, g.ow)
        out = backend.array_module(x).ascontiguousarray(out.transpose(1, 0, 2, 3))
        if bias:
            out += bias[0].reshape(-1, 1, 1)
        return out

    def backward(self, grad):
        x, weight = self.saved_inputs[:2]
        g = self.geometry
        grad3 = grad.permute(1, 0, 2, 3).reshape(g.groups, g.out_per_group, -1)  # (g, Og, N·L)
        w = weight.reshape(g.groups, g.out_per_group, g.k)
        grad_x = grad_w = grad_b = None
        if x.requires_grad:
            grad_x = Col2Im.apply(w.mT @ grad3, geometry=g)
        if weight.requires_grad:
            # With create_graph the columns must be a function of x (for the second
            # derivative); otherwise the ones computed in forward are reused.
            cols = Im2Col.apply(x, geometry=g) if autograd.is_grad_enabled() \
                else constant(self.cols)
            grad_w = (grad3 @ cols.mT).reshape(weight.shape)
        if len(self.inputs) == 3 and self.inputs[2].requires_grad:
            grad_b = grad.sum((0, 2, 3))
        return (grad_x, grad_w) if len(self.inputs) == 2 else (grad_x, grad_w, grad_b)


class Im2Col(Function):
    def forward(self, x, geometry):
        self.geometry = geometry
        return im2col(x, geometry)

    def backward(self, grad):
        return Col2Im.apply(grad, geometry=self.geometry)


class Col2Im(Function):
    def forward(self, cols, geometry):
        self.geometry = geometry
        return col2im(cols, geometry)

    def backward(self, grad):
        return Im2Col.apply(grad, geometry=self.geometry)


def conv2d_reference(x, weight, bias=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1),
                     groups=1):
    """The convolution as a sum over kernel positions of shifted slices times a
    matrix, in plain Tensor ops (pad, slice, matmul, cat): slow, but obviously
    the definition. For testing the fused op."""
    from .pad import Pad
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    out_channels, cg, kh, kw = weight.shape
    oh = output_size(x.shape[2], kh, sh, ph, dh)
    ow = output_size(x.shape[3], kw, sw, pw, dw)
    x = Pad.apply(x, widths=((0, 0), (0, 0), (ph, ph), (pw, pw)), value=0.0)
    og = out_channels // groups
    outs = []
    for grp in range(groups):
        xg = x[:, grp * cg:(grp + 1) * cg]
        wg = weight[grp * og:(grp + 1) * og]
        total = 0
        for i in range(kh):
            for j in range(kw):
                patch = xg[:, :, i * dh:i * dh + sh * (oh - 1) + 1:sh,
                           j * dw:j * dw + sw * (ow - 1) + 1:sw]          # (N, Cg, OH, OW)
                total = total + patch.permute(0, 2, 3, 1) @ wg[:, :, i, j].mT  # (N, OH, OW, Og)
        outs.append(total)
    from .movement import cat
    out = cat(outs, dim=3).permute(0, 3, 1, 2)
    return out if bias is None else out + bias.reshape(-1, 1, 1)


# ------------------------------------------------------------------ array helpers
class _Geometry:
    """Every size the im2col/col2im pair needs, computed once per call."""

    def __init__(self, x_shape, w_shape, stride, padding, dilation, groups):
        self.n, self.channels, self.h, self.w = x_shape
        self.out_channels, self.in_per_group, self.kh, self.kw = w_shape
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups
        self.out_per_group = self.out_channels // groups
        self.k = self.in_per_group * self.kh * self.kw
        self.oh = output_size(self.h, self.kh, stride[0], padding[0], dilation[0])
        self.ow = output_size(self.w, self.kw, stride[1], padding[1], dilation[1])


def im2col(x, g):
    """(N, C, H, W) -> cols (groups, Cg·kh·kw, N·OH·OW), via a strided view."""
    xp = backend.array_module(x)
    ph, pw = g.padding
    if ph or pw:
        x = xp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    view = windows(x, (g.kh, g.kw), g.stride, g.dilation, (g.oh, g.ow))  # (N, C, kh, kw, OH, OW)
    cols = xp.ascontiguousarray(view.transpose(1, 2, 3, 0, 4, 5))        # (C, kh, kw, N, OH, OW)
    return cols.reshape(g.groups, g.k, g.n * g.oh * g.ow)


def windows(x, kernel, stride, dilation, out_size):
    """Every window a kernel visits in a padded (N, C, H, W) array, as a
    (N, C, kh, kw, OH, OW) strided view: element [n, c, i, j, oh, ow] is
    x[n, c, oh·s + i·d, ow·s + j·d]. No copy; also used by max pooling."""
    sn, sc, srow, scol = x.strides
    return backend.array_module(x).lib.stride_tricks.as_strided(
        x, x.shape[:2] + tuple(kernel) + tuple(out_size),
        (sn, sc, srow * dilation[0], scol * dilation[1], srow * stride[0], scol * stride[1]))


def col2im(cols, g):
    """The adjoint of im2col: add every column entry back onto its pixel."""
    xp = backend.array_module(cols)
    (ph, pw), (sh, sw), (dh, dw) = g.padding, g.stride, g.dilation
    cols = cols.reshape(g.channels, g.kh, g.kw, g.n, g.oh, g.ow)
    out = xp.zeros((g.n, g.channels, g.h + 2 * ph, g.w + 2 * pw), dtype=cols.dtype)
    target = out.transpose(1, 0, 2, 3)   # a (C, N, H, W) view, the columns' order
    for i in range(g.kh):                # a loop over kernel positions, never over pixels
        for j in range(g.kw):
            target[:, :, i * dh:i * dh + sh * (g.oh - 1) + 1:sh,
                   j * dw:j * dw + sw * (g.ow - 1) + 1:sw] += cols[:, i, j]
    return out[:, :, ph:ph + g.h, pw:pw + g.w]
