import numpy as np

from datasets import mnist

registered_datasets = {'mnist': mnist}


def get(dataset_hparams, train=True):
    module = registered_datasets[dataset_hparams.dataset_name]
    dataset = module.Dataset.get_train_set(not dataset_hparams.do_not_augment) if train else module.Dataset.get_test_set()
    return module.DataLoader(dataset, dataset_hparams.batch_size)


def iterations_per_epoch(dataset_hparams):
    count = registered_datasets[dataset_hparams.dataset_name].Dataset.num_train_examples()
    return np.ceil(count / dataset_hparams.batch_size).astype(int)


def num_classes(dataset_hparams):
    return registered_datasets[dataset_hparams.dataset_name].Dataset.num_classes()
