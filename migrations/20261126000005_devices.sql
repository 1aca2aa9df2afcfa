-- Read models of devices, built from `device` events.

CREATE TABLE rm_devices
(
    device_sn        text PRIMARY KEY,
    workspace_id     text        NOT NULL DEFAULT '',
    user_id          text        NOT NULL DEFAULT '',
    nickname         text        NOT NULL DEFAULT '',
    device_desc      text        NOT NULL DEFAULT '',
    domain           int         NOT NULL DEFAULT -1,
    type             int         NOT NULL DEFAULT -1,
    sub_type         int         NOT NULL DEFAULT -1,
    thing_version    text        NOT NULL DEFAULT '',
    firmware_version text        NOT NULL DEFAULT '',
    parent_sn        text        NOT NULL DEFAULT '',
    child_sn         text        NOT NULL DEFAULT '',
    control_source   text        NOT NULL DEFAULT '',
    online           boolean     NOT NULL DEFAULT false,
    bound            boolean     NOT NULL DEFAULT false,
    bound_time       timestamptz,
    login_time       timestamptz,
    update_time      timestamptz NOT NULL
);
CREATE INDEX rm_devices_workspace ON rm_devices (workspace_id, domain);

CREATE TABLE rm_device_hms
(
    hms_id       text PRIMARY KEY,
    workspace_id text        NOT NULL DEFAULT '',
    sn           text        NOT NULL,
    tid          text        NOT NULL DEFAULT '',
    bid          text        NOT NULL DEFAULT '',
    level        int         NOT NULL,
    module       int         NOT NULL,
    hms_key      text        NOT NULL,
    raw          jsonb       NOT NULL DEFAULT '{}',
    create_time  timestamptz NOT NULL,
    -- null while unread
    read_time    timestamptz
);
CREATE INDEX rm_device_hms_sn ON rm_device_hms (sn, create_time DESC);

-- HMS texts by DJI's message key; `hangar hms-import` loads DJI's published hms.json.
CREATE TABLE hms_dictionary
(
    hms_key    text PRIMARY KEY,
    message_en text NOT NULL DEFAULT '',
    message_zh text NOT NULL DEFAULT ''
);
