#!/usr/bin/env bash
# Run the paper's experiment grid (Section V) with `open_lth compare`, then write one summary page.
#
#   ./run_all.sh [--quick] [compare flags...]
#
# Full grid: ResNet-20, WideResNet-20 and VGG-11 on CIFAR-10, CIFAR-100 and Tiny ImageNet (Figs. 5-7),
# IMP vs concave l1 vs concave log, 3 rounds x 3 seeds each; ResNet-56 on CIFAR-10 (Table II); the
# ablations of Fig. 8 (threshold vs fixed fraction) and Fig. 9 (sigmoid mask). Quick grid (--quick):
# the same comparison on scikit-learn digits, plus MNIST when $OPEN_LTH_DATASETS/mnist holds its files.
# Extra flags go to every `open_lth compare` (e.g. --device=cuda, --quiet). Finished runs are reused,
# interrupted ones resume: run it again after a stop. Results go to $OPEN_LTH_ROOT (~/open_lth_data);
# the summary is $OPEN_LTH_ROOT/paper_summary.md.
set -euo pipefail
cd "$(dirname "$0")"

QUICK=0
if [[ "${1:-}" == "--quick" ]]; then QUICK=1; shift; fi
export OPEN_LTH_ROOT="${OPEN_LTH_ROOT:-$HOME/open_lth_data}"
PYTHON="${PYTHON:-python}"
if command -v open_lth >/dev/null 2>&1; then OPEN_LTH=(open_lth); else OPEN_LTH=("$PYTHON" -m open_lth_concave); fi
START=$SECONDS

if (( QUICK )); then
    PRESETS=(quick_digits)
    if OPEN_LTH_NO_DOWNLOAD=1 "$PYTHON" -m open_lth_concave.report.check_datasets --quiet mnist; then
        PRESETS+=(quick_mnist)
    else
        echo "run_all.sh: no MNIST files under \${OPEN_LTH_DATASETS:-~/open_lth_datasets}/mnist; the quick grid runs on digits only"
    fi
else
    PRESETS=()
    for arch in resnet20 wrn20 vgg11; do
        for data in cifar10 cifar100 tiny_imagenet; do PRESETS+=("paper_${arch}_${data}"); done
    done
    PRESETS+=(paper_resnet56_cifar10 paper_ablation_hard_resnet20_cifar10
              paper_ablation_sigmoid_resnet20_cifar10 paper_ablation_sigmoid_resnet20_cifar100)
    if ! OPEN_LTH_NO_DOWNLOAD=1 "$PYTHON" -m open_lth_concave.report.check_datasets "${PRESETS[@]}"; then
        echo "run_all.sh: stopped before training: put the missing dataset files in place (see above) and run again" >&2
        exit 1
    fi
fi

# Validate every preset and learn its comparison folder before anything trains.
DIRS=()
for preset in "${PRESETS[@]}"; do
    DIRS+=("$("${OPEN_LTH[@]}" compare --default_hparams="$preset" "$@" --display_output_location)")
done

K=0
for preset in "${PRESETS[@]}"; do
    K=$((K + 1))
    echo "==== run_all.sh: run $K of ${#PRESETS[@]}: $preset ($(( (SECONDS - START) / 60 )) min so far)"
    "${OPEN_LTH[@]}" compare --default_hparams="$preset" "$@"
done

"$PYTHON" -m open_lth_concave.report.paper_summary --output "$OPEN_LTH_ROOT/paper_summary.md" "${DIRS[@]}"
ELAPSED=$(( SECONDS - START ))
echo "run_all.sh: done in $(( ELAPSED / 60 )) min $(( ELAPSED % 60 )) s; see $OPEN_LTH_ROOT/paper_summary.md"
