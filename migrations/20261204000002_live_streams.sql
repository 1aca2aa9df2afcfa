-- Live streams of cameras, as Hangar started, changed and stopped them (LiveStreamController).
CREATE TABLE rm_live_streams
(
    stream_id     text PRIMARY KEY,
    workspace_id  text        NOT NULL,
    sn            text        NOT NULL,
    video_id      text        NOT NULL,
    url_type      int         NOT NULL,
    url           text        NOT NULL,
    video_quality int         NOT NULL,
    video_type    text        NOT NULL,
    pushing       boolean     NOT NULL,
    username      text        NOT NULL,
    started_at    timestamptz NOT NULL,
    update_time   timestamptz NOT NULL
);
CREATE INDEX rm_live_streams_device ON rm_live_streams (workspace_id, sn, started_at DESC);
