"""Containers: Sequential, ModuleList, ModuleDict."""
from collections import OrderedDict

from .module import Module


class _IndexedModules(Module):
    """What Sequential and ModuleList share: modules named "0", "1", ... in order."""

    def __getitem__(self, idx):
        if isinstance(idx, slice):
            return self._from_slice(list(self._modules.items())[idx])
        modules = list(self._modules.values())
        return modules[_index(idx, len(modules), type(self).__name__)]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def append(self, module):
        self.add_module(str(len(self)), module)
        return self

    def extend(self, modules):
        for module in modules:
            self.append(module)
        return self


class Sequential(_IndexedModules):
    """Calls its layers in order, each on the previous one's output.

        >>> import tinygrad_zh as tg
        >>> from tinygrad_zh import nn
        >>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> model
        Sequential(
          (0): Linear(in_features=4, out_features=8, bias=True)
          (1): ReLU()
          (2): Linear(in_features=8, out_features=2, bias=True)
        )
        (total parameters: 58)
        >>> model(tg.ones(3, 4)).shape, len(model), model[-1].out_features
        ((3, 2), 3, 2)
    """

    def __init__(self, *args):
        super().__init__()
        if len(args) == 1 and isinstance(args[0], (dict, OrderedDict)):
            for name, module in args[0].items():
                self.add_module(name, module)
        else:
            for i, module in enumerate(args):
                self.add_module(str(i), module)

    def forward(self, input):
        for module in self._modules.values():
            input = module(input)
        return input

    @staticmethod
    def _from_slice(items):
        return Sequential(OrderedDict(items))   # keeps the layers' names, as PyTorch does


class ModuleList(_IndexedModules):
    """A list of modules whose parameters the parent module sees.

    A plain Python list would hide them from ``parameters()``.
    """

    def __init__(self, modules=None):
        super().__init__()
        for module in modules or ():
            self.append(module)

    def __setitem__(self, idx, module):
        self.add_module(str(_index(idx, len(self), "ModuleList")), module)

    @staticmethod
    def _from_slice(items):
        return ModuleList(module for _, module in items)   # renumbered from 0


class ModuleDict(Module):
    """A dict of modules (insertion order kept) whose parameters the parent sees."""

    def __init__(self, modules=None):
        super().__init__()
        for name, module in (modules or {}).items():
            self.add_module(name, module)

    def __getitem__(self, key):
        return self._modules[key]

    def __setitem__(self, key, module):
        self.add_module(key, module)

    def __delitem__(self, key):
        del self._modules[key]

    def __contains__(self, key):
        return key in self._modules

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules)

    def keys(self):
        return self._modules.keys()

    def values(self):
        return self._modules.values()

    def items(self):
        return self._modules.items()


def _index(idx, length, name):
    if not -length <= idx < length:
        raise IndexError(f"{name}: index {idx} is out of range for {length} modules")
    return idx % length
