-- Read models built by the projectors from the ES stream. Never written by command-api.

CREATE TABLE rm_workspaces
(
    workspace_id   text PRIMARY KEY,
    id             bigint NOT NULL,
    workspace_name text   NOT NULL,
    workspace_desc text   NOT NULL DEFAULT '',
    platform_name  text   NOT NULL DEFAULT '',
    bind_code      text   NOT NULL DEFAULT '',
    create_time    timestamptz NOT NULL
);

CREATE TABLE rm_users
(
    user_id       text PRIMARY KEY,
    username      text        NOT NULL UNIQUE,
    password_hash text        NOT NULL,
    workspace_id  text        NOT NULL,
    user_type     int         NOT NULL,
    mqtt_username text        NOT NULL DEFAULT '',
    mqtt_password text        NOT NULL DEFAULT '',
    create_time   timestamptz NOT NULL,
    update_time   timestamptz NOT NULL
);
CREATE INDEX rm_users_workspace ON rm_users (workspace_id, create_time);

CREATE TABLE rm_media_files
(
    file_id           text PRIMARY KEY,
    workspace_id      text        NOT NULL,
    file_name         text        NOT NULL,
    file_path         text        NOT NULL DEFAULT '',
    object_key        text        NOT NULL,
    fingerprint       text        NOT NULL,
    tinny_fingerprint text        NOT NULL DEFAULT '',
    sub_file_type     int,
    is_original       boolean     NOT NULL DEFAULT true,
    drone             text        NOT NULL DEFAULT '',
    drone_model_key   text        NOT NULL DEFAULT '',
    payload_model_key text        NOT NULL DEFAULT '',
    job_id            text        NOT NULL DEFAULT '',
    metadata          jsonb       NOT NULL DEFAULT '{}',
    username          text        NOT NULL DEFAULT '',
    create_time       timestamptz NOT NULL,
    position          bigint      NOT NULL,
    UNIQUE (workspace_id, fingerprint)
);
CREATE INDEX rm_media_files_list ON rm_media_files (workspace_id, position DESC);
CREATE INDEX rm_media_files_tiny ON rm_media_files (workspace_id, tinny_fingerprint);

CREATE TABLE rm_media_groups
(
    workspace_id        text        NOT NULL,
    file_group_id       text        NOT NULL,
    file_count          int         NOT NULL,
    file_uploaded_count int         NOT NULL,
    reports             int         NOT NULL,
    update_time         timestamptz NOT NULL,
    PRIMARY KEY (workspace_id, file_group_id)
);
