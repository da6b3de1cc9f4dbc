"""The pipeline: predict -> annotate -> train -> evaluate, each stage written once and cached by its settings; the
study that chooses settings on validation; training jobs the app runs in a separate process.

    stages       PipelineConfig and Stages (what runs, in which order, what is reused)
    steps        the stage bodies the CLI, the jobs and the stages all call
    study        trials that differ from one base config, scored with intervals
    jobs         one training job at a time, surviving page refreshes (JobSpec, JobManager)
    job_runner   the process behind one job
"""
