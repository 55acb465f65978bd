"""Stand-in entry point: `python open_lth.py <train|lottery> [flags]`."""
import argparse
import sys

from cli import arg_utils, runner_registry
import platforms.registry


def main():
    name = arg_utils.maybe_get_arg('subcommand', positional=True)
    if name not in runner_registry.registered_runners:
        print('Choose a command: ' + ', '.join(runner_registry.registered_runners))
        sys.exit(1)
    parser = argparse.ArgumentParser(conflict_handler='resolve')
    parser.add_argument('subcommand')
    parser.add_argument('--platform', default='local')
    parser.add_argument('--display_output_location', action='store_true')
    platform_cls = platforms.registry.get('local')
    platform_cls.add_args(parser)
    runner_registry.get(name).add_args(parser)
    args = parser.parse_args()
    platform = platform_cls.create_from_args(args)
    runner = runner_registry.get(name).create_from_args(args)
    platform.run_job(runner.display_output_location if args.display_output_location else runner.run)


if __name__ == '__main__':
    main()
