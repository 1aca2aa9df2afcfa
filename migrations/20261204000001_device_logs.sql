-- Log uploads of docks (DeviceLogsController): one row per upload, its files as requested and as
-- the dock last reported them.
CREATE TABLE rm_device_logs
(
    logs_id          text PRIMARY KEY,
    workspace_id     text        NOT NULL,
    device_sn        text        NOT NULL,
    username         text        NOT NULL,
    logs_information text        NOT NULL,
    happen_time      timestamptz,
    status           int         NOT NULL,
    -- [{file_id, device_sn, module, object_key, list}] as requested
    files            jsonb       NOT NULL,
    -- [{device_sn, module, progress, result, upload_rate, status, key, fingerprint, size}], last report
    progress         jsonb       NOT NULL DEFAULT '[]',
    create_time      timestamptz NOT NULL,
    update_time      timestamptz NOT NULL
);
CREATE INDEX rm_device_logs_device ON rm_device_logs (workspace_id, device_sn, create_time DESC);
