"""What train, tune and infer take of a local machine when the job does not say, and of a cluster."""

from __future__ import annotations

import pytest

from raysegment.errors import ConfigError
from raysegment.sizing import max_concurrent_trials, size_infer, size_train, size_tune

LAPTOP = {"CPU": 2.0}
WORKSTATION = {"CPU": 16.0, "GPU": 1.0}


def test_tune_defaults_fit_a_two_core_laptop():
    # The failure: 1 worker x 1 CPU + 0.1 driver + 1 CPU for data did not fit 2 CPUs.
    sizing = size_tune(LAPTOP, samples=2, workers=1, cpus_per_worker=None, gpus_per_worker=0.0, driver_cpus=0.1)
    assert (sizing.concurrent, sizing.cpus_per_worker, sizing.chosen) == (1, 0.9, True)
    assert sizing.concurrent * (sizing.workers * sizing.cpus_per_worker + sizing.driver_cpus) + 1.0 <= 2.0
    line = sizing.line()
    assert line.startswith("tune on local Ray (2 CPU, 0 GPU): 1 trial at a time, each 1 worker x 0.9 CPU + 0.1 CPU driver")
    assert "1 CPU for data loading" in line and "chosen to fit this machine" in line and "\n" not in line


def test_tune_spreads_sixteen_cpus_over_the_trials_that_run_at_once():
    cpu_only = {"CPU": 16.0}
    eight = size_tune(cpu_only, samples=8, workers=1, cpus_per_worker=None, gpus_per_worker=0.0, driver_cpus=0.1)
    assert (eight.concurrent, eight.cpus_per_worker) == (8, 1.75)  # 8 x (1.75 + 0.1) = 14.8 of the 15 left
    many = size_tune(cpu_only, samples=32, workers=1, cpus_per_worker=None, gpus_per_worker=0.0, driver_cpus=0.1)
    assert (many.concurrent, many.cpus_per_worker) == (13, 1.05)  # at 1 CPU per worker 13 trials fit; they share the rest
    capped = size_tune(cpu_only, samples=32, workers=2, cpus_per_worker=None, gpus_per_worker=0.0, driver_cpus=0.1, max_concurrent=3)
    assert (capped.concurrent, capped.cpus_per_worker) == (3, 2.45)
    # quarter-GPU trials: the GPU allows 4
    gpu = size_tune(WORKSTATION, samples=8, workers=1, cpus_per_worker=None, gpus_per_worker=0.25, driver_cpus=0.1)
    assert (gpu.concurrent, gpu.cpus_per_worker) == (4, 3.65)
    assert "4 trials at a time, each 1 worker x 3.65 CPU + 0.25 GPU" in gpu.line()


def test_tune_keeps_the_job_values_and_checks_them():
    sizing = size_tune(LAPTOP, samples=8, workers=1, cpus_per_worker=0.25, gpus_per_worker=0.0, driver_cpus=0.1)
    assert (sizing.concurrent, sizing.cpus_per_worker, sizing.chosen) == (2, 0.25, False)
    assert "as the job asks" in sizing.line()
    with pytest.raises(ConfigError, match="one trial needs 1.1 CPU .* plus 1 CPU for data loading; the cluster has 2 CPU"):
        size_tune(LAPTOP, samples=8, workers=1, cpus_per_worker=1.0, gpus_per_worker=0.0, driver_cpus=0.1)
    with pytest.raises(ConfigError, match="GPU"):
        size_tune(LAPTOP, samples=8, workers=1, cpus_per_worker=None, gpus_per_worker=1.0, driver_cpus=0.1)


def test_on_a_cluster_the_job_decides():
    tune = size_tune(None, samples=8, workers=2, cpus_per_worker=None, gpus_per_worker=1.0, driver_cpus=0.1)
    assert (tune.concurrent, tune.cpus_per_worker, tune.chosen) == (None, 1.0, False)
    assert tune.line() == ("tune on a Ray cluster: no cap on trials at a time, each 2 workers x 1 CPU + 1 GPU + 0.1 CPU driver "
                           "(as the job asks; the autoscaler adds nodes)")
    assert size_tune(None, 8, 1, 4.0, 0.0, 0.1, max_concurrent=2).concurrent == 2
    assert size_train(None, 4, None, 1.0).cpus_per_worker == 1.0
    assert size_train(None, 4, 6.0, 1.0).cpus_per_worker == 6.0
    assert (size_infer(None, None, None, 0.0).workers, size_infer(None, 3, None, 0.0).cpus_per_worker) == (1, 1.0)


def test_train_leaves_one_cpu_for_data_loading():
    assert size_train(LAPTOP, 1, None, 0.0).cpus_per_worker == 1.0
    assert size_train(LAPTOP, 2, None, 0.0).cpus_per_worker == 0.5  # the seed jobs' 2 workers on a laptop
    assert size_train(WORKSTATION, 1, None, 1.0).cpus_per_worker == 15.0
    assert size_train({"CPU": 16.0}, 3, None, 0.0).cpus_per_worker == 5.0
    line = size_train(LAPTOP, 2, None, 0.0).line()
    assert line == ("train on local Ray (2 CPU, 0 GPU): 2 workers x 0.5 CPU; 1 CPU for data loading "
                    "(chosen to fit this machine; --cpus-per-worker sets it)")
    assert size_train(LAPTOP, 2, 1.0, 0.0).cpus_per_worker == 1.0  # the job's value, if it fits
    with pytest.raises(ConfigError, match=r"--workers 2 x \(--cpus-per-worker 2, --gpus-per-worker 0\) asks for 4 CPU"):
        size_train(LAPTOP, 2, 2.0, 0.0)
    with pytest.raises(ConfigError, match="--workers 20 on this machine's 2 CPUs leaves under 0.1 CPU per worker"):
        size_train(LAPTOP, 20, None, 0.0)


def test_infer_runs_one_single_threaded_predictor_per_cpu_the_decoding_leaves():
    laptop = size_infer(LAPTOP, None, None, 0.0)
    # the best measured setting on 2 cores (README, Performance), leaving half a CPU to read and write scans
    assert (laptop.workers, laptop.cpus_per_worker, laptop.io_cpus) == (2, 0.75, 0.5)
    assert laptop.line() == ("infer on local Ray (2 CPU, 0 GPU): 2 predictors x 0.75 CPU; 0.5 CPU for reading and writing scans "
                             "(chosen to fit this machine; --cpus-per-worker sets it)")
    server = size_infer({"CPU": 16.0}, None, None, 0.0)
    assert (server.workers, server.cpus_per_worker, server.io_cpus) == (12, 1.0, 4.0)  # a quarter decodes and writes
    assert size_infer({"CPU": 16.0}, 5, None, 0.0).cpus_per_worker == 2.4  # the job's workers share the CPUs
    assert size_infer(LAPTOP, None, 0.5, 0.0).workers == 3  # as many of the job's size as fit
    gpu = size_infer(WORKSTATION, None, None, 1.0)
    assert (gpu.workers, gpu.cpus_per_worker) == (1, 1.0)  # one per GPU; the CPUs are left to decoding
    explicit = size_infer(LAPTOP, 2, 0.75, 0.0)
    assert (explicit.workers, explicit.cpus_per_worker, explicit.chosen) == (2, 0.75, False)  # io_tasks checks them


def test_fractional_gpus_pack_trials_on_one_gpu():
    # 16 CPUs and 1 GPU: four quarter-GPU trials fit; the GPU is the limit.
    assert max_concurrent_trials({"CPU": 16, "GPU": 1}, 1, 1.0, 0.25, 0.1) == 4
    # two workers of 0.25 GPU each per trial (gpus_per_trial 0.5): two trials.
    assert max_concurrent_trials({"CPU": 16, "GPU": 1}, 2, 1.0, 0.25, 0.1) == 2


def test_concurrency_keeps_a_cpu_for_data_and_honours_the_request():
    # 2 CPUs: 1 kept for Ray Data tasks, 0.35 per trial -> 2 trials.
    assert max_concurrent_trials({"CPU": 2}, 1, 0.25, 0.0, 0.1) == 2
    assert max_concurrent_trials({"CPU": 2}, 1, 0.25, 0.0, 0.1, requested=1) == 1
    assert max_concurrent_trials({"CPU": 64}, 1, 1.0, 0.0, 0.1, requested=8) == 8
    with pytest.raises(ConfigError, match="data loading"):
        max_concurrent_trials({"CPU": 2}, 2, 1.0, 0.0, 0.1)
    with pytest.raises(ConfigError, match="GPU"):
        max_concurrent_trials({"CPU": 8}, 1, 1.0, 1.0, 0.1)
