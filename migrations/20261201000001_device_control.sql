-- Who controls each gateway's aircraft and payloads, as the device last said (state `control_source`
-- and `payloads`): "A" is the dock (or the RC's first pilot), "B" the other controller.
ALTER TABLE rm_devices
    ADD COLUMN flight_control  text  NOT NULL DEFAULT '',
    ADD COLUMN payload_control jsonb NOT NULL DEFAULT '[]';
