-- Custom flight areas of a workspace (FlightAreaController), and how far each dock got with
-- synchronising them (`flight_areas_sync_progress`).
CREATE TABLE rm_flight_areas
(
    area_id      text PRIMARY KEY,
    workspace_id text        NOT NULL,
    name         text        NOT NULL,
    type         text        NOT NULL,
    content      jsonb       NOT NULL,
    status       boolean     NOT NULL,
    username     text        NOT NULL,
    create_time  timestamptz NOT NULL,
    update_time  timestamptz NOT NULL
);
CREATE INDEX rm_flight_areas_workspace ON rm_flight_areas (workspace_id, create_time);

ALTER TABLE rm_devices ADD COLUMN flight_area_status text;
ALTER TABLE rm_devices ADD COLUMN flight_area_code bigint;
ALTER TABLE rm_devices ADD COLUMN flight_area_file jsonb;
