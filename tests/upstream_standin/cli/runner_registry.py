from lottery.runner import LotteryRunner
from training.runner import TrainingRunner

registered_runners = {'train': TrainingRunner, 'lottery': LotteryRunner}


def get(name):
    return registered_runners[name]
