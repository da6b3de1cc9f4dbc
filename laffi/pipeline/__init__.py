"""The pipeline: predict -> annotate -> train -> evaluate, each stage written once and cached by its settings; the
study that chooses settings on validation; training jobs the app runs in a separate process.

    config       PipelineConfig: one run's specification, from YAML
    stages       Stages (what runs, in which order, what is reused)
    calibration  the stage that chooses every trained adapter's threshold on validation before evaluation
    steps        the stage bodies the CLI, the jobs and the stages all call
    study        trials that differ from one base config, scored with intervals; a learning curve of them
    folds        a study whose recipes get their thresholds by leave-one-article-out
    jobs         one training job at a time, surviving page refreshes (JobSpec, JobManager)
    job_runner   the process behind one job
"""
