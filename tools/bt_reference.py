"""The PyTorch reference for barlow: the model, loss, LARS, schedule and augmentations of
facebookresearch/barlowtwins main.py, plus the arch-string parsing barlow uses
("resnet18-cifar:w=0.25"), so tests and benchmarks build the same network in both.

Run with Debian's /usr/bin/python3 (python3-torch, python3-torchvision).
"""
import math
import random

import torch
import torchvision
import torchvision.transforms as transforms
from PIL import ImageFilter, ImageOps
from torch import nn, optim
from torchvision.models.resnet import BasicBlock, Bottleneck

ARCHS = {
    "resnet18": (BasicBlock, [2, 2, 2, 2]),
    "resnet34": (BasicBlock, [3, 4, 6, 3]),
    "resnet50": (Bottleneck, [3, 4, 6, 3]),
    "resnet101": (Bottleneck, [3, 4, 23, 3]),
    "resnet152": (Bottleneck, [3, 8, 36, 3]),
}


def parse_arch(arch):
    base, _, opt = arch.partition(":")
    width = 1.0
    if opt:
        assert opt.startswith("w="), arch
        width = float(opt[2:])
    cifar = base.endswith("-cifar")
    if cifar:
        base = base[: -len("-cifar")]
    return base, cifar, width


class WideResNet(torchvision.models.ResNet):
    """torchvision's ResNet with every stage's width scaled (same module names)."""

    def __init__(self, block, layers, width=1.0, zero_init_residual=True):
        nn.Module.__init__(self)
        w = [max(1, int(round(64 * width * 2 ** i))) for i in range(4)]
        self._norm_layer = nn.BatchNorm2d
        self.inplanes = w[0]
        self.dilation = 1
        self.groups = 1
        self.base_width = 64
        self.conv1 = nn.Conv2d(3, w[0], kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(w[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, w[0], layers[0])
        self.layer2 = self._make_layer(block, w[1], layers[1], stride=2)
        self.layer3 = self._make_layer(block, w[2], layers[2], stride=2)
        self.layer4 = self._make_layer(block, w[3], layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(w[3] * block.expansion, 1000)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.constant_(m.bn3.weight, 0)
                elif isinstance(m, BasicBlock):
                    nn.init.constant_(m.bn2.weight, 0)
        self.feat_dim = w[3] * block.expansion


def make_backbone(arch):
    """The backbone as main.py builds it (zero_init_residual=True, fc = Identity)."""
    base, cifar, width = parse_arch(arch)
    block, layers = ARCHS[base]
    if width == 1.0:
        net = getattr(torchvision.models, base)(zero_init_residual=True)
        net.feat_dim = net.fc.in_features
    else:
        net = WideResNet(block, layers, width)
    if cifar:
        c = net.conv1.out_channels
        net.conv1 = nn.Conv2d(3, c, kernel_size=3, stride=1, padding=1, bias=False)
        nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
        net.maxpool = nn.Identity()
    net.fc = nn.Identity()
    return net


def off_diagonal(x):
    n, m = x.shape
    assert n == m
    return x.flatten()[:-1].view(n - 1, n + 1)[:, 1:].flatten()


class BarlowTwins(nn.Module):
    """main.py's BarlowTwins, single process (no all_reduce), arch-parameterised."""

    def __init__(self, arch, projector, batch_size, lambd=0.0051):
        super().__init__()
        self.batch_size = batch_size
        self.lambd = lambd
        self.backbone = make_backbone(arch)
        sizes = [self.backbone.feat_dim] + list(map(int, projector.split("-")))
        layers = []
        for i in range(len(sizes) - 2):
            layers.append(nn.Linear(sizes[i], sizes[i + 1], bias=False))
            layers.append(nn.BatchNorm1d(sizes[i + 1]))
            layers.append(nn.ReLU(inplace=True))
        layers.append(nn.Linear(sizes[-2], sizes[-1], bias=False))
        self.projector = nn.Sequential(*layers)
        self.bn = nn.BatchNorm1d(sizes[-1], affine=False)

    def forward_parts(self, y1, y2):
        z1 = self.projector(self.backbone(y1))
        z2 = self.projector(self.backbone(y2))
        c = self.bn(z1).T @ self.bn(z2)
        c.div_(self.batch_size)
        on_diag = torch.diagonal(c).add_(-1).pow_(2).sum()
        off_diag = off_diagonal(c).pow_(2).sum()
        loss = on_diag + self.lambd * off_diag
        return loss, on_diag, off_diag

    def forward(self, y1, y2):
        return self.forward_parts(y1, y2)[0]


class LARS(optim.Optimizer):
    """main.py's LARS."""

    def __init__(self, params, lr, weight_decay=0, momentum=0.9, eta=0.001,
                 weight_decay_filter=False, lars_adaptation_filter=False):
        defaults = dict(lr=lr, weight_decay=weight_decay, momentum=momentum, eta=eta,
                        weight_decay_filter=weight_decay_filter,
                        lars_adaptation_filter=lars_adaptation_filter)
        super().__init__(params, defaults)

    def exclude_bias_and_norm(self, p):
        return p.ndim == 1

    @torch.no_grad()
    def step(self):
        for g in self.param_groups:
            for p in g["params"]:
                dp = p.grad
                if dp is None:
                    continue
                if not g["weight_decay_filter"] or not self.exclude_bias_and_norm(p):
                    dp = dp.add(p, alpha=g["weight_decay"])
                if not g["lars_adaptation_filter"] or not self.exclude_bias_and_norm(p):
                    param_norm = torch.norm(p)
                    update_norm = torch.norm(dp)
                    one = torch.ones_like(param_norm)
                    q = torch.where(param_norm > 0.,
                                    torch.where(update_norm > 0,
                                                (g["eta"] * param_norm / update_norm), one), one)
                    dp = dp.mul(q)
                param_state = self.state[p]
                if "mu" not in param_state:
                    param_state["mu"] = torch.zeros_like(p)
                mu = param_state["mu"]
                mu.mul_(g["momentum"]).add_(dp)
                p.add_(mu, alpha=-g["lr"])


def make_optimizer(model, weight_decay=1e-6):
    param_weights, param_biases = [], []
    for param in model.parameters():
        (param_biases if param.ndim == 1 else param_weights).append(param)
    parameters = [{"params": param_weights}, {"params": param_biases}]
    return LARS(parameters, lr=0, weight_decay=weight_decay,
                weight_decay_filter=True, lars_adaptation_filter=True)


def adjust_learning_rate(optimizer, step, steps_per_epoch, epochs, batch_size,
                         lr_weights=0.2, lr_biases=0.0048, warmup_epochs=10):
    max_steps = epochs * steps_per_epoch
    warmup_steps = warmup_epochs * steps_per_epoch
    base_lr = batch_size / 256
    if step < warmup_steps:
        lr = base_lr * step / warmup_steps
    else:
        step -= warmup_steps
        max_steps -= warmup_steps
        q = 0.5 * (1 + math.cos(math.pi * step / max_steps))
        end_lr = base_lr * 0.001
        lr = base_lr * q + end_lr * (1 - q)
    optimizer.param_groups[0]["lr"] = lr * lr_weights
    optimizer.param_groups[1]["lr"] = lr * lr_biases
    return lr


def state_for_barlow(model):
    """The model's state_dict under barlow's names: backbone without its "backbone." prefix,
    fc and num_batches_tracked dropped."""
    out = {}
    for k, v in model.state_dict().items():
        if k.endswith("num_batches_tracked"):
            continue
        if k.startswith("backbone."):
            k = k[len("backbone."):]
        out[k] = v.detach().contiguous()
    return out


def load_from_barlow(model, tensors):
    """Inverse of state_for_barlow (missing num_batches_tracked kept)."""
    sd = model.state_dict()
    for k in sd:
        if k.endswith("num_batches_tracked"):
            continue
        src = k[len("backbone."):] if k.startswith("backbone.") else k
        sd[k] = tensors[src].to(sd[k].dtype).reshape(sd[k].shape)
    model.load_state_dict(sd)


class GaussianBlur(object):
    """main.py's GaussianBlur (PIL, sigma uniform in [0.1, 2.0])."""

    def __init__(self, p):
        self.p = p

    def __call__(self, img):
        if random.random() < self.p:
            sigma = random.random() * 1.9 + 0.1
            return img.filter(ImageFilter.GaussianBlur(sigma))
        return img


class Solarization(object):
    """main.py's Solarization (PIL's default threshold 128)."""

    def __init__(self, p):
        self.p = p

    def __call__(self, img):
        if random.random() < self.p:
            return ImageOps.solarize(img)
        return img


class Transform:
    """main.py's two-view Transform for barlow's presets: "imagenet" is main.py's (224 px,
    bicubic, blur p 1.0 / 0.1, solarization p 0.0 / 0.2); "cifar" is 32 px, bilinear, no blur,
    solarization p 0.0 / 0.2 and CIFAR-10 normalisation."""

    def __init__(self, preset):
        cifar = preset == "cifar"
        size = 32 if cifar else 224
        mode = transforms.InterpolationMode
        interp = mode.BILINEAR if cifar else mode.BICUBIC
        if cifar:
            norm = transforms.Normalize(mean=[0.4914, 0.4822, 0.4465], std=[0.2470, 0.2435, 0.2616])
        else:
            norm = transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])

        def view(blur_p, sol_p):
            t = [transforms.RandomResizedCrop(size, interpolation=interp),
                 transforms.RandomHorizontalFlip(p=0.5),
                 transforms.RandomApply([transforms.ColorJitter(brightness=0.4, contrast=0.4,
                                                                saturation=0.2, hue=0.1)], p=0.8),
                 transforms.RandomGrayscale(p=0.2)]
            if not cifar:
                t.append(GaussianBlur(p=blur_p))
            t += [Solarization(p=sol_p), transforms.ToTensor(), norm]
            return transforms.Compose(t)

        self.transform = view(1.0, 0.0)
        self.transform_prime = view(0.1, 0.2)

    def __call__(self, x):
        return self.transform(x), self.transform_prime(x)
