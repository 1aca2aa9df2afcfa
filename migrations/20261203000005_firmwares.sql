-- Firmware packages of a workspace (DeviceFirmwareController).
CREATE TABLE rm_firmwares
(
    firmware_id     text PRIMARY KEY,
    workspace_id    text        NOT NULL,
    file_name       text        NOT NULL,
    product_version text        NOT NULL,
    object_key      text        NOT NULL,
    file_size       bigint      NOT NULL,
    file_md5        text        NOT NULL,
    device_names    text[]      NOT NULL,
    release_note    text        NOT NULL,
    released_time   date        NOT NULL,
    status          boolean     NOT NULL,
    username        text        NOT NULL,
    create_time     timestamptz NOT NULL
);
CREATE INDEX rm_firmwares_workspace ON rm_firmwares (workspace_id, released_time DESC);
