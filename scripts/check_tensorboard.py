#!/usr/bin/env python3
"""Read a ringtrain run's TensorBoard folder with TensorBoard's own loaders.

    python3 scripts/check_tensorboard.py run/tb

Needs the tensorboard package (pip install tensorboard). Reads every event file of
the folder with EventFileLoader (TFRecord checksums, the Event protobuf), then the
whole folder with EventAccumulator, which merges the files and applies the restart
markers of resumed runs, and prints each scalar tag with its first and last points.
Exits non-zero if a file does not open with the file_version event, if there are no
scalars, or if a step appears twice in a tag after the merge.
"""
import glob
import os
import sys

from tensorboard.backend.event_processing import event_accumulator, event_file_loader


def main(logdir):
    files = sorted(glob.glob(os.path.join(logdir, "*tfevents*")))
    if not files:
        sys.exit(f"{logdir}: no event files")
    for path in files:
        events = list(event_file_loader.EventFileLoader(path).Load())
        if not events or events[0].file_version != "brain.Event:2":
            sys.exit(f"{path}: does not start with the file_version event")
        print(f"{os.path.basename(path)}: {len(events)} events")
    acc = event_accumulator.EventAccumulator(logdir, size_guidance={event_accumulator.SCALARS: 0})
    acc.Reload()
    tags = acc.Tags()["scalars"]
    if not tags:
        sys.exit(f"{logdir}: no scalars")
    for tag in tags:
        points = acc.Scalars(tag)
        steps = [p.step for p in points]
        if len(steps) != len(set(steps)):
            sys.exit(f"{tag}: a step appears twice: {steps}")
        first, last = points[0], points[-1]
        print(f"{tag}: {len(points)} points, step {first.step} = {first.value:.6g} ... step {last.step} = {last.value:.6g}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
