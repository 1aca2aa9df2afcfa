-- A gateway's live-stream capacity (`live_capacity` state): the cameras of it and of its aircraft
-- that can stream, as the gateway reported them.
ALTER TABLE rm_devices ADD COLUMN live_capacity jsonb;
