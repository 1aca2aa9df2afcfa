-- Read model of wayline jobs (WaylineJobController), built from `wayline_job` events. It also tells
-- the scheduler which jobs to look at; the `wayline_job` aggregates decide.
CREATE TABLE rm_wayline_jobs
(
    job_id                text PRIMARY KEY,
    workspace_id          text        NOT NULL,
    name                  text        NOT NULL,
    file_id               text        NOT NULL,
    file_name             text        NOT NULL DEFAULT '',
    dock_sn               text        NOT NULL,
    wayline_type          int         NOT NULL DEFAULT 0,
    task_type             int         NOT NULL,
    begin_time            timestamptz NOT NULL,
    end_time              timestamptz,
    execute_time          timestamptz,
    completed_time        timestamptz,
    status                int         NOT NULL,
    prepared              boolean     NOT NULL DEFAULT false,
    paused                boolean     NOT NULL DEFAULT false,
    progress              int,
    code                  bigint      NOT NULL DEFAULT 0,
    username              text        NOT NULL DEFAULT '',
    rth_altitude          int         NOT NULL DEFAULT 0,
    out_of_control_action int         NOT NULL DEFAULT 0,
    min_battery_capacity  int,
    min_storage_capacity  int,
    media_count           int         NOT NULL DEFAULT 0,
    uploaded_count        int         NOT NULL DEFAULT 0,
    uploading             boolean     NOT NULL DEFAULT false,
    parent_id             text,
    create_time           timestamptz NOT NULL,
    update_time           timestamptz NOT NULL
);
CREATE INDEX rm_wayline_jobs_list ON rm_wayline_jobs (workspace_id, create_time DESC, job_id);
CREATE INDEX rm_wayline_jobs_due ON rm_wayline_jobs (begin_time) WHERE status = 1;
