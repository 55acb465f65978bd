"""Jobs: the command line of a subcommand made into the work it describes (the one place that reads flags).

    job = jobs.build("lottery", ["--default_hparams=quick_digits", "--levels=2"])
    job.runner.run()

`build(command, argv)` checks every flag and returns a Job (TrainJob, LotteryJob, BranchJob): the parsed
flags, the experiment's description, its runner(s), the results root and the platform. `describe(command,
argv)` gives only the experiment (e.g. its name), writing nothing. `parser(command, argv)` is the full
parser the first pass of `argv` selects (jobs/flags.py). The command line (cli.py), `compare`
(jobs/compare.py), `summary` (jobs/summary.py) and the tests build their jobs here.
"""
from open_lth_concave.jobs.build import (  # noqa: F401
    BranchJob, Job, LotteryJob, TrainJob, build, check_model_and_dataset, check_names, desc_from_args, describe,
    rewinding_as_pretraining)
from open_lth_concave.jobs.flags import (  # noqa: F401
    DESCRIPTIONS, OneLineParser, ParsedFirst, UsageError, first_pass, flags_without_effect, parser, preset_defaults,
    registered_names_epilog, strategy_flags, strategy_hparams_cls)
