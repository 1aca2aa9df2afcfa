-- Read model of wayline files (WaylineFileController), built from `wayline_file` events.
CREATE TABLE rm_wayline_files
(
    wayline_id         text PRIMARY KEY,
    workspace_id       text        NOT NULL,
    name               text        NOT NULL,
    object_key         text        NOT NULL,
    sign               text        NOT NULL,
    drone_model_key    text        NOT NULL DEFAULT '',
    payload_model_keys text[]      NOT NULL DEFAULT '{}',
    template_types     int[]       NOT NULL DEFAULT '{}',
    favorited          boolean     NOT NULL DEFAULT false,
    user_name          text        NOT NULL DEFAULT '',
    size               bigint      NOT NULL DEFAULT 0,
    create_time        timestamptz NOT NULL,
    update_time        timestamptz NOT NULL
);
CREATE INDEX rm_wayline_files_workspace ON rm_wayline_files (workspace_id, update_time DESC);
