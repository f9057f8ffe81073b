#!/usr/bin/env bash
# Score every image of a bucket on Google Cloud Dataflow (autoscaling workers), with a worker container that holds
# fakedetect (built from the Dockerfile beside this file; see README.md).
set -euo pipefail
PROJECT=my-project
REGION=europe-west4
BUCKET=gs://my-bucket
IMAGE=europe-west4-docker.pkg.dev/my-project/fakedetect/beam-worker:0.1.0

fakedetect sweep "$BUCKET/runs/general" "$BUCKET/uploads/2026-12-04/**" --out "$BUCKET/verdicts/2026-12-04" \
  --runner dataflow --engine onnxruntime --batch-size 64 --threads 1 \
  --project "$PROJECT" --region "$REGION" --temp_location "$BUCKET/tmp" \
  --sdk_container_image "$IMAGE" --machine_type n2-standard-4 --max_num_workers 50 \
  --number_of_worker_harness_threads 1 --experiments use_runner_v2 --detach
