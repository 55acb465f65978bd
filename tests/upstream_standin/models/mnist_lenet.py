import torch

from foundations import hparams
from lottery.desc import LotteryDesc
from models import base
from pruning import sparse_global


class Model(base.Model):
    """Fully connected LeNet: mnist_lenet_<w1>[_<w2>...] hidden widths, 10 outputs."""

    def __init__(self, widths, initializer, outputs=10):
        super().__init__()
        sizes = [784] + widths
        self.fc_layers = torch.nn.ModuleList(torch.nn.Linear(a, b) for a, b in zip(sizes, sizes[1:]))
        self.fc = torch.nn.Linear(sizes[-1], outputs)
        self.criterion = torch.nn.CrossEntropyLoss()
        self.apply(initializer)

    def forward(self, x):
        x = x.reshape(x.shape[0], -1)
        for layer in self.fc_layers:
            x = torch.relu(layer(x))
        return self.fc(x)

    output_layer_names = property(lambda self: ['fc.weight', 'fc.bias'])
    loss_criterion = property(lambda self: self.criterion)

    @staticmethod
    def is_valid_model_name(model_name):
        parts = model_name.split('_')
        return model_name.startswith('mnist_lenet_') and len(parts) > 2 and all(p.isdigit() and int(p) > 0 for p in parts[2:])

    @staticmethod
    def get_model_from_name(model_name, initializer, outputs=None):
        return Model([int(p) for p in model_name.split('_')[2:]], initializer, outputs or 10)

    @staticmethod
    def default_hparams():
        return LotteryDesc(
            hparams.ModelHparams(model_name='mnist_lenet_300_100', model_init='kaiming_normal', batchnorm_init='uniform'),
            hparams.DatasetHparams(dataset_name='mnist', batch_size=128),
            hparams.TrainingHparams(optimizer_name='sgd', lr=0.1, training_steps='40ep'),
            sparse_global.PruningHparams(pruning_strategy='sparse_global', pruning_fraction=0.2,
                                         pruning_layers_to_ignore='fc.weight'))
