package tensorboard

import (
	"math"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

// FileVersion is the file_version of the first event of every file: the version of
// the event format that TensorBoard reads with restarts marked by SessionLog events.
const FileVersion = "brain.Event:2"

// Field numbers of the messages written, from TensorBoard's event.proto and
// summary.proto.
const (
	eventWallTime    protowire.Number = 1 // double
	eventStep        protowire.Number = 2 // int64
	eventFileVersion protowire.Number = 3 // string
	eventSummary     protowire.Number = 5 // Summary
	eventSessionLog  protowire.Number = 7 // SessionLog

	summaryValue protowire.Number = 1 // repeated Summary.Value

	valueTag         protowire.Number = 1 // string
	valueSimpleValue protowire.Number = 2 // float

	sessionLogStatus protowire.Number = 1 // SessionLog.SessionStatus
)

// sessionStart is SessionLog.SessionStatus START.
const sessionStart = 1

// Scalar is one point of a scalar time series: its tag (TensorBoard groups tags by
// the part before the first slash: "train/loss") and its value at a step.
type Scalar struct {
	Tag   string
	Value float32
}

// appendEventHeader appends an Event's wall_time (seconds since the Unix epoch, with
// the fraction) and step, each left out when zero as proto3 does.
func appendEventHeader(b []byte, wall time.Time, step int64) []byte {
	if secs := float64(wall.UnixNano()) / 1e9; secs != 0 {
		b = protowire.AppendTag(b, eventWallTime, protowire.Fixed64Type)
		b = protowire.AppendFixed64(b, math.Float64bits(secs))
	}
	if step != 0 {
		b = protowire.AppendTag(b, eventStep, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(step))
	}
	return b
}

// appendFileVersionEvent appends the serialized Event that opens a file.
func appendFileVersionEvent(b []byte, wall time.Time) []byte {
	b = appendEventHeader(b, wall, 0)
	b = protowire.AppendTag(b, eventFileVersion, protowire.BytesType)
	return protowire.AppendString(b, FileVersion)
}

// appendStartEvent appends the serialized Event that says a session (re)started at
// step: a SessionLog with status START.
func appendStartEvent(b []byte, wall time.Time, step int64) []byte {
	b = appendEventHeader(b, wall, step)
	var log []byte
	log = protowire.AppendTag(log, sessionLogStatus, protowire.VarintType)
	log = protowire.AppendVarint(log, sessionStart)
	b = protowire.AppendTag(b, eventSessionLog, protowire.BytesType)
	return protowire.AppendBytes(b, log)
}

// appendScalarsEvent appends the serialized Event of a Summary that holds one
// simple_value per scalar, in order, at step.
func appendScalarsEvent(b []byte, wall time.Time, step int64, scalars []Scalar) []byte {
	b = appendEventHeader(b, wall, step)
	var summary, value []byte
	for _, s := range scalars {
		value = protowire.AppendTag(value[:0], valueTag, protowire.BytesType)
		value = protowire.AppendString(value, s.Tag)
		value = protowire.AppendTag(value, valueSimpleValue, protowire.Fixed32Type)
		value = protowire.AppendFixed32(value, math.Float32bits(s.Value))
		summary = protowire.AppendTag(summary, summaryValue, protowire.BytesType)
		summary = protowire.AppendBytes(summary, value)
	}
	b = protowire.AppendTag(b, eventSummary, protowire.BytesType)
	return protowire.AppendBytes(b, summary)
}
