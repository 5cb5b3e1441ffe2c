"""The batched engine: every model of a work unit trained in one pass.

Per-operation overhead dominates a 4.9k-parameter CNN trained one at a time, so the models of a
unit are stacked: model m's conv filters become group m of one grouped convolution, its head one
slice of a batched matmul. The backward pass is written out by hand (aten's own
``convolution_backward`` and activation-backward kernels) because autograd asks oneDNN for the
conv bias gradient, which costs as much as the weight gradient (a plain sum is >10x cheaper),
and for data and weight gradients in one call, measured slower here than two calls.
Every family (``modelset.families``) takes this path: the convolutions run on its effective
weights, computed each step from its own parameters. Other architectures train on the reference
loop (the registry says which are batched). A torch.func engine (vmap of grad over stacked
parameters) was measured at 0.6x this one's speed on digits500 units and removed.

Each model keeps everything the reference loop gives it (``train.train_reference``): its init
(``init_model``), its own ``torch.Generator(data_seed)`` and ``randperm`` per epoch, its task's
data (its own subset of it: ``train.model_data``), its dropout masks (drawn from its own generator
for its real samples, layer by layer, as the reference loop draws them), its own optimiser state
and step count. Models whose tasks have different train-set sizes
take different numbers of steps per epoch and a different last batch: batches are padded to the
batch size, padded samples are masked out of loss and gradient, the loss is averaged over each
model's real samples, and a model with no batch left in an epoch is not stepped. The result
matches the reference within float tolerance (convolutions grouped differently sum in a
different order); ``tests/test_batched.py`` states and checks the tolerance.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call, vmap

from modelset.archs import SmallCNN, dropout_mask
from modelset.errors import ModelsetError
from modelset.families import FAMILIES, effective_weights, mean_groups
from modelset.schema import CURVES

from .plan import PlanEntry
from .train import CheckpointRecorder, ModelResult, dropout_generator, init_model, model_data, result_of

aten = torch.ops.aten

# Recipe keys that must be equal for models to share one pass; lr, momentum and weight decay
# are per model, and init only matters at init time.
PASS_KEYS = ("epochs", "batch_size", "optimizer", "activation")


def train_batched(unit: list[PlanEntry], device="cpu", data_root=None) -> list[ModelResult]:
    """Train ``unit`` and return one ModelResult per entry, in unit order."""
    passes: dict[tuple, list[int]] = {}
    for i, e in enumerate(unit):
        passes.setdefault(
            (e.arch, e.family, e.family_options, e.checkpoints, *(e.hparams[k] for k in PASS_KEYS)), []
        ).append(i)
    results: list[ModelResult | None] = [None] * len(unit)
    for idx in passes.values():
        for i, r in zip(idx, _train_pass([unit[i] for i in idx], torch.device(device), data_root)):
            results[i] = r
    return results


class _Split:
    """One split of each model's task data: every distinct task once, padded to the largest of the
    pass, (T, N, ...) inputs and (T, N) labels, and the task of each model. Models of a unit mostly
    share a task (a unit is a task's seeds), so a unit holds its data once, not once per model."""

    def __init__(self, xs, ys, task, device):
        n = max(len(y) for y in ys)
        x = torch.zeros(len(xs), n, *xs[0].shape[1:])
        y = torch.zeros(len(ys), n, dtype=torch.long)
        for t, (xt, yt) in enumerate(zip(xs, ys)):
            x[t, : len(yt)], y[t, : len(yt)] = xt, yt
        self.x, self.y, self.size = x.to(device), y.to(device), n
        self.task = torch.tensor(task, device=device)

    def gather(self, idx):
        """Rows ``idx[m]`` of model m's data: (M, B, ...) inputs and (M, B) labels. index_select on
        the flattened data: ~10x faster than advanced indexing with two index tensors."""
        flat = (idx + self.size * self.task[:, None]).view(-1)
        x = self.x.view(-1, *self.x.shape[2:]).index_select(0, flat).view(*idx.shape, *self.x.shape[2:])
        return x, self.y.view(-1).index_select(0, flat).view(idx.shape)

    def rows(self, start, stop):
        """Rows start:stop of every model's data."""
        return self.x[:, start:stop].index_select(0, self.task), self.y[:, start:stop].index_select(0, self.task)


class _Data:
    """Each model's data, on the device: ``train`` and ``test`` splits, each distinct one held once.
    A model's training data is its own fixed subset where its ``train_fraction`` is below 1
    (``train.model_data``), so it is shared only by models of one task, fraction and data seed."""

    def __init__(self, entries, device, data_root=None):
        tasks = [(e.dataset, tuple(e.classes), e.transform) for e in entries]
        fractions = [e.hparams.get("train_fraction", 1.0) for e in entries]
        subsets = [(*t, f, e.data_seed if f < 1 else None) for t, f, e in zip(tasks, fractions, entries)]
        self.train, self.n_train = self._split(entries, subsets, 0, device, data_root)
        self.test, self.n_test = self._split(entries, tasks, 2, device, data_root)

    @staticmethod
    def _split(entries, keys, at, device, data_root) -> tuple[_Split, list[int]]:
        distinct = list(dict.fromkeys(keys))
        tensors = [model_data(entries[keys.index(k)], data_root)[at : at + 2] for k in distinct]
        task = [distinct.index(k) for k in keys]
        return _Split([t[0] for t in tensors], [t[1] for t in tensors], task, device), [
            len(tensors[t][1]) for t in task
        ]


class _Flat:
    """All parameters of M models in one buffer, one contiguous (M, size) block per tensor, so
    the optimiser runs a handful of ops on one tensor per step instead of a loop over tensors."""

    def __init__(self, models, device):
        named = [list(m.named_parameters()) for m in models]
        if [n for n, _ in models[0].state_dict().items()] != [n for n, _ in named[0]]:
            raise ModelsetError(
                f"the batched engine trains models without buffers, and {type(models[0]).__name__} "
                'has some (BatchNorm statistics); set engine = "reference"'
            )
        self.M = len(models)
        self.names = [n for n, _ in named[0]]
        self.shapes = [tuple(p.shape) for _, p in named[0]]
        sizes = [math.prod(s) for s in self.shapes]
        self.offsets = np.cumsum([0] + sizes)
        self.data = torch.cat([torch.stack([dict(nm)[n].detach() for nm in named]).reshape(-1) for n in self.names]).to(
            device
        )
        self.grad = torch.zeros_like(self.data)
        self.model_of = torch.cat([torch.arange(self.M).repeat_interleave(s) for s in sizes]).to(device)

    def block(self, i, buf=None):
        """Tensor i of every model as an (M, *shape) view of ``buf`` (default: the parameters)."""
        buf = self.data if buf is None else buf
        o = self.M * self.offsets[i]
        return buf[o : o + self.M * (self.offsets[i + 1] - self.offsets[i])].view(self.M, *self.shapes[i])

    def row(self, m) -> np.ndarray:
        """Model m's parameters in state_dict order (the archive layout)."""
        return torch.cat([self.block(i)[m].reshape(-1) for i in range(len(self.names))]).cpu().numpy()

    @torch.no_grad()
    def load_into(self, m, model) -> None:
        """Copy model m's current parameters into ``model`` (one of the models the pass began with)."""
        for i, p in enumerate(model.parameters()):
            p.copy_(self.block(i)[m])


class _Optimizer:
    """torch.optim's single-tensor Adam, AdamW, SGD and RMSprop arithmetic, elementwise over all models,
    with each model's own lr, momentum, weight decay and step count; models not in this step
    (``active`` false) keep parameters and state unchanged."""

    def __init__(self, flat: _Flat, hps: list[dict]):
        self.flat, self.kind = flat, hps[0]["optimizer"]
        self.lr = np.array([h["lr"] for h in hps], np.float64)
        self.wd = np.array([h["weight_decay"] for h in hps], np.float64)
        self.momentum = np.array([h["momentum"] for h in hps], np.float64)
        self.steps = np.zeros(flat.M, np.int64)
        z = torch.zeros_like(flat.data)
        self.state = [z.clone(), z.clone()]  # Adam: exp_avg, exp_avg_sq; SGD: momentum buffer; RMSprop: square_avg

    def _per_elem(self, values):
        """One value per model, spread over that model's elements; a Python float when all
        models share it, which is then exactly torch.optim's own arithmetic, and cheaper."""
        values = np.asarray(values, np.float64)
        if (values == values[0]).all():
            return float(values[0])
        v = torch.tensor(values, dtype=torch.float32, device=self.flat.data.device)
        return v.index_select(0, self.flat.model_of)

    def step(self, active: np.ndarray) -> None:
        p, g = self.flat.data, self.flat.grad
        if not active.any():
            return
        if not active.all():  # rare: only when a unit mixes tasks with different batch counts
            keep = self._per_elem(~active) != 0
            saved = [p.clone()] + [s.clone() for s in self.state]
        self.steps += active
        if self.kind == "sgd":
            self._sgd(p, g)
        elif self.kind == "rmsprop":
            self._rmsprop(p, g)
        else:
            self._adam(p, g)
        if not active.all():
            for t, old in zip([p] + self.state, saved):
                torch.where(keep, old, t, out=t)

    def _adam(self, p, g):
        beta1, beta2, eps = 0.9, 0.999, 1e-8
        exp_avg, exp_avg_sq = self.state
        if self.kind == "adamw":
            p.mul_(self._per_elem(1 - self.lr * self.wd))
        elif self.wd.any():
            g = self._axpy(g, p, self.wd)
        exp_avg.lerp_(g, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        steps = np.maximum(self.steps, 1)
        step_size = self.lr / (1 - beta1**steps)
        bias_correction2_sqrt = (1 - beta2**steps) ** 0.5
        denom = (exp_avg_sq.sqrt() / self._per_elem(bias_correction2_sqrt)).add_(eps)
        step_size = self._per_elem(-step_size)
        if isinstance(step_size, float):
            p.addcdiv_(exp_avg, denom, value=step_size)
        else:  # addcdiv computes self + (value * t1) / t2: the same rounding
            p.addcdiv_(exp_avg * step_size, denom)

    def _rmsprop(self, p, g):
        alpha, eps = 0.99, 1e-8  # torch.optim.RMSprop's defaults, as the reference loop uses them
        if self.wd.any():
            g = self._axpy(g, p, self.wd)
        square_avg = self.state[0]
        square_avg.mul_(alpha).addcmul_(g, g, value=1 - alpha)
        avg = square_avg.sqrt().add_(eps)
        lr = self._per_elem(-self.lr)
        if isinstance(lr, float):
            p.addcdiv_(g, avg, value=lr)
        else:  # addcdiv computes self + (value * t1) / t2: the same rounding
            p.addcdiv_(g * lr, avg)

    def _axpy(self, y, x, a):
        """y + a * x, a per model; a shared value takes torch.optim's own (fused) kernel."""
        a = self._per_elem(a)
        return y.add(x, alpha=a) if isinstance(a, float) else y + x * a

    def _sgd(self, p, g):
        if self.wd.any():
            g = self._axpy(g, p, self.wd)
        if self.momentum.any():
            buf = self.state[0]
            first, momentum = self._per_elem(self.steps == 1), self._per_elem(self.momentum)
            if isinstance(first, float) and isinstance(momentum, float):  # torch.optim's own ops
                buf.copy_(g) if first else buf.mul_(momentum).add_(g)
            else:
                first = first != 0 if isinstance(first, torch.Tensor) else torch.tensor(bool(first))
                buf.copy_(torch.where(first, g, buf * momentum + g))
            g = buf
        p.copy_(self._axpy(p, g, -self.lr))


class _Effective(torch.nn.Module):
    """A model's effective weights (``families.effective_weights``) as a module's output, so
    functional_call and vmap can evaluate them for M models' parameters at once."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self):
        return tuple(effective_weights(self.model).values())


class _GroupedCNN:
    """M SmallCNNs as grouped convolutions (channels-last, which oneDNN runs fastest here) with a
    hand-written backward pass. Models of another family (STR, DGConv, ACDC) compute their
    effective weights from their own parameters each step, vmapped over the models, and the
    weight gradients flow back through that small graph by autograd: the graph holds a few
    thousand weights per model, never activations."""

    def __init__(self, models: list[SmallCNN], flat: _Flat, own_params: bool):
        self.flat, self.M = flat, flat.M
        self.n_conv = len(models[0].convs)
        self.activation = models[0].activation
        effective, params = list(effective_weights(models[0]).values()), list(models[0].parameters())
        self.strides = []
        for conv, w in zip(models[0].convs, effective[: 2 * self.n_conv : 2]):  # 3x3, padded by 1
            assert w.shape[-2:] == (3, 3) and conv.padding in (1, (1, 1))
            s = conv.stride
            self.strides.append([s, s] if isinstance(s, int) else list(s))
        self.dropout: _Dropout | None = None  # set by the pass when a model of it has dropout
        # A family without parameters of its own trains its effective weights directly: no graph.
        self.dense = not own_params
        assert not self.dense or all(e is p for e, p in zip(effective, params))
        if not self.dense:
            names = ["model." + n for n in flat.names]
            effective = _Effective(models[0])
            self._effective = vmap(lambda *params: functional_call(effective, dict(zip(names, params)), ()))

    def _weights(self, grad: bool):
        """Every layer's (M, ...) effective weight and bias in the dense layout, and the leaf
        tensors (one per parameter block) their graph starts from. Leaves, not slices of one
        buffer: a slice's backward fills a zero tensor of the whole buffer."""
        blocks = [self.flat.block(i) for i in range(len(self.flat.names))]
        if self.dense:
            return blocks, None
        leaves = [b.detach().requires_grad_(grad) for b in blocks]
        with torch.set_grad_enabled(grad):
            return list(self._effective(*leaves)), leaves

    def prepare(self, grad: bool = False):
        """Every layer's weights in the layout its kernels take (conv filters as one channels-last
        grouped filter bank, biases flat), the effective weights and their leaves: once per step,
        and once per evaluation, not once per chunk of it."""
        effective, leaves = self._weights(grad)
        weights = [t.detach() for t in effective]
        for i in range(self.n_conv):
            w = weights[2 * i]
            weights[2 * i] = w.reshape(self.M * w.shape[1], *w.shape[2:]).contiguous(memory_format=torch.channels_last)
            weights[2 * i + 1] = weights[2 * i + 1].reshape(-1)
        return weights, effective, leaves

    def forward(self, x, keep=False, prepared=None):
        """x (M, B, C, H, W) -> logits (M, B, K); with ``keep``, what backward needs. ``prepared``:
        this step's ``prepare()``, computed here when not given."""
        M, B, C, H, W = x.shape
        weights, effective, leaves = prepared or self.prepare(grad=keep)
        h = x.permute(1, 0, 2, 3, 4).reshape(B, M * C, H, W).contiguous(memory_format=torch.channels_last)
        saved, dropped = [h], ([], [])  # dropped: activations before dropout, and their masks
        for i in range(self.n_conv):
            z = F.conv2d(h, weights[2 * i], weights[2 * i + 1], stride=self.strides[i], padding=1, groups=M)
            # In place for relu (its backward needs only the output): out of place, relu on this
            # channels-last tensor costs as much as the convolution.
            h = z.relu_() if self.activation == "relu" else _ACT[self.activation](z)
            if keep and self.dropout is not None:  # the activation's backward needs h itself
                mask = self.dropout.masks(h)
                dropped[0].append(h)
                dropped[1].append(mask)
                h = h * mask
            saved += [z, h]
        g = h.mean((2, 3)).view(B, M, -1).transpose(0, 1)  # M, B, width
        hw, hb = weights[2 * self.n_conv], weights[2 * self.n_conv + 1]
        logits = torch.baddbmm(hb.unsqueeze(1), g, hw.transpose(1, 2))
        return (logits, (saved, weights, g, effective, leaves, dropped)) if keep else logits

    def backward(self, dlogits, cache):
        """Gradients of sum(dlogits * logits) into ``flat.grad``."""
        saved, weights, g, effective, leaves, (undropped, masks) = cache
        M, n = self.M, self.n_conv
        # convolution_backward's (stride, padding, dilation, transposed, output padding, groups)
        conv = [(s, [1, 1], [1, 1], False, [0, 0], M) for s in self.strides]
        grads = [None] * (2 * n + 2)  # of the effective weights, in the dense layout
        grads[2 * n], grads[2 * n + 1] = torch.bmm(dlogits.transpose(1, 2), g), dlogits.sum(1)
        dg = torch.bmm(dlogits, weights[2 * n])  # M, B, width
        B, width = dg.shape[1], dg.shape[2]
        H, W = saved[-1].shape[2:]  # the pooled maps
        dh = (dg / (H * W)).transpose(0, 1).reshape(B, 1, 1, M * width).expand(B, H, W, M * width)
        dh = dh.permute(0, 3, 1, 2)  # a channels-last view of the broadcast mean gradient
        for i in reversed(range(n)):
            x, z, h = saved[2 * i], saved[2 * i + 1], saved[2 * i + 2]
            if masks:  # through dropout: the gradient of the kept units, scaled as they were
                dh, h = dh * masks[i], undropped[i]
            dz = ACT_BACKWARD[self.activation](dh, z, h)
            grads[2 * i] = aten.convolution_backward(dz, x, weights[2 * i], None, *conv[i], [False, True, False])[1]
            grads[2 * i + 1] = dz.sum((0, 2, 3))
            if i > 0:  # the input image needs no gradient
                dh = aten.convolution_backward(dz, x, weights[2 * i], None, *conv[i], [True, False, False])[0]
        if self.dense:
            for i, gr in enumerate(grads):
                self.flat.block(i, self.flat.grad).view(gr.shape).copy_(gr)
        else:
            grads = torch.autograd.grad(effective, leaves, [gr.view(e.shape) for gr, e in zip(grads, effective)])
            for i, gr in enumerate(grads):
                self.flat.block(i, self.flat.grad).copy_(gr)


class _Dropout:
    """Each model's dropout masks, drawn as the reference loop draws them: from the model's own
    generator (``train.dropout_generator``), for its real samples of the step only (``counts``,
    set before each step), layer after layer; padded samples and models without dropout get 1."""

    def __init__(self, entries, device):
        self.p = [e.hparams.get("dropout", 0.0) for e in entries]
        self.gens = [dropout_generator(e) for e in entries]
        self.device, self.counts = device, np.zeros(len(entries), np.int64)

    def masks(self, h):
        """(B, M*C, H, W) multipliers of an activation laid out as the grouped convolutions' output
        (channels last: memory (B, H, W, M, C), which is how each model's mask is drawn)."""
        B, MC, H, W = h.shape
        M = len(self.p)
        mask = (
            torch.ones(B, H, W, M, MC // M)
            if (self.counts < B).any() or not all(self.p)
            else torch.empty(B, H, W, M, MC // M)
        )
        for m, (p, gen, count) in enumerate(zip(self.p, self.gens, self.counts)):
            if p and count:
                mask[:count, :, :, m] = dropout_mask((int(count), MC // M, H, W), p, gen).permute(0, 2, 3, 1)
        return mask.view(B, H, W, MC).permute(0, 3, 1, 2).to(self.device)


_ACT = {"relu": torch.relu, "gelu": F.gelu, "tanh": torch.tanh, "silu": F.silu}
# The kernels autograd itself calls for these activations: (upstream grad, input, output).
ACT_BACKWARD = {
    "relu": lambda d, z, h: aten.threshold_backward(d, h, 0),
    "gelu": lambda d, z, h: aten.gelu_backward(d, z),
    "tanh": lambda d, z, h: aten.tanh_backward(d, h),
    "silu": lambda d, z, h: aten.silu_backward(d, z),
}


# Images per model per evaluation pass. Small chunks keep the activations in cache: on digits
# units of 32 models, 32 images ran a train split 2.1x faster than the whole split at once, and on
# a fashion-mnist500 unit a test split 1.8x faster than 535 images (benchmarks/bench_batched.py).
EVAL_IMAGES = 32


def _evaluate(net, split: _Split, n) -> tuple[np.ndarray, np.ndarray]:
    """Per-model mean cross-entropy and accuracy on each model's first ``n[m]`` samples, EVAL_IMAGES
    per model per pass."""
    M, N, device = len(n), split.size, split.y.device
    chunk = EVAL_IMAGES
    valid = torch.arange(N, device=device)[None] < torch.tensor(n, device=device)[:, None]
    loss_sum = torch.zeros(M, device=device)
    correct = torch.zeros(M, dtype=torch.long, device=device)
    with torch.no_grad():
        prepared = net.prepare()
        for s in range(0, N, chunk):
            x, y = split.rows(s, s + chunk)
            logits, v = net.forward(x, prepared=prepared), valid[:, s : s + chunk]
            loss_sum += (F.cross_entropy(logits.transpose(1, 2), y, reduction="none") * v).sum(1)
            correct += ((logits.argmax(2) == y) & v).sum(1)
    nt = torch.tensor(n, dtype=torch.float32, device=device)
    return (loss_sum / nt).cpu().numpy(), (correct.float() / nt).cpu().numpy()


def _train_pass(entries: list[PlanEntry], device, data_root=None) -> list[ModelResult]:
    hp = entries[0].hparams
    epochs, bs = hp["epochs"], hp["batch_size"]
    models = [init_model(e, data_root) for e in entries]
    flat = _Flat(models, device)
    if not isinstance(models[0], SmallCNN):  # the registry marks only SmallCNN architectures batched
        raise ModelsetError(
            f'the batched engine trains SmallCNN architectures; {entries[0].arch} is not one: set engine = "reference"'
        )
    net = _GroupedCNN(models, flat, FAMILIES[entries[0].family].own_params)
    if any(e.hparams.get("dropout", 0.0) for e in entries):
        net.dropout = _Dropout(entries, device)
    opt = _Optimizer(flat, [e.hparams for e in entries])
    data = _Data(entries, device, data_root)
    M, n = len(entries), np.array(data.n_train)
    gens = [torch.Generator().manual_seed(e.data_seed) for e in entries]
    steps = -(-n // bs)  # batches per epoch, per model
    curves = {k: np.zeros((M, epochs), np.float32) for k in CURVES}
    ckpts = [CheckpointRecorder(e.checkpoints) for e in entries]  # one plan: the same epochs for all
    train_metrics = []  # of the last checkpoint: a checkpoint at the last epoch is the final evaluation

    def record(test_loss, test_acc):
        train_metrics[:] = _evaluate(net, data.train, data.n_train)
        train_loss, train_acc = train_metrics
        for m, (entry, model) in enumerate(zip(entries, models)):
            flat.load_into(m, model)
            ckpts[m].record(
                model,
                entry.family,
                {
                    "train_loss": float(train_loss[m]),
                    "train_acc": float(train_acc[m]),
                    "test_loss": float(test_loss[m]),
                    "test_acc": float(test_acc[m]),
                },
            )

    if ckpts[0].wants(0):
        record(*_evaluate(net, data.test, data.n_test))
    for epoch in range(epochs):
        # Each model's own permutation, laid out as (step, model, position), padded with row 0.
        order = torch.zeros(steps.max() * bs, M, dtype=torch.long)
        for m, gen in enumerate(gens):
            order[: n[m], m] = torch.randperm(int(n[m]), generator=gen)
        order = order.view(-1, bs, M).permute(0, 2, 1).contiguous().to(device)
        loss_sum = torch.zeros(M, dtype=torch.float64, device=device)
        correct = torch.zeros(M, dtype=torch.long, device=device)
        for s in range(steps.max()):
            count = np.clip(n - s * bs, 0, bs)  # real samples of each model in this step
            if net.dropout is not None:
                net.dropout.counts = count
            x, y = data.train.gather(order[s])
            count_t = torch.tensor(count, device=device)
            valid = torch.arange(bs, device=device)[None] < count_t[:, None]
            # Loss of model m = mean over its real samples, as F.cross_entropy in the reference.
            weight = valid / count_t.clamp(min=1)[:, None]
            logits, cache = net.forward(x, keep=True)
            with torch.no_grad():
                p = logits.softmax(2)
                dlogits = p.scatter_add(2, y[..., None], -torch.ones_like(p[..., :1])) * weight[..., None]
            net.backward(dlogits, cache)
            with torch.no_grad():
                ce = F.cross_entropy(logits.transpose(1, 2), y, reduction="none")
                loss_sum += ((ce * weight).sum(1)).double() * count_t
                correct += ((logits.argmax(2) == y) & valid).sum(1)
            opt.step(count > 0)
        curves["train_loss"][:, epoch] = loss_sum.cpu().numpy() / n
        curves["train_acc"][:, epoch] = correct.cpu().numpy() / n
        curves["test_loss"][:, epoch], curves["test_acc"][:, epoch] = _evaluate(net, data.test, data.n_test)
        for m, model in enumerate(models):  # what the family itself records per epoch (DGConv groups)
            flat.load_into(m, model)
            curves["groups"][m, epoch] = mean_groups(model)
        if ckpts[0].wants(epoch + 1):  # the test metrics are the curve's, as stored (float32)
            record(curves["test_loss"][:, epoch], curves["test_acc"][:, epoch])
    train_loss, train_acc = train_metrics if ckpts[0].wants(epochs) else _evaluate(net, data.train, data.n_train)
    results = []
    for m, (entry, model) in enumerate(zip(entries, models)):
        flat.load_into(m, model)
        metrics = {
            "train_loss": float(train_loss[m]),
            "train_acc": float(train_acc[m]),
            "test_loss": float(curves["test_loss"][m, -1]),
            "test_acc": float(curves["test_acc"][m, -1]),
        }
        results.append(result_of(model, entry.family, {k: curves[k][m] for k in CURVES}, metrics, ckpts[m].result()))
    return results
