package tensorboard

import (
	"encoding/binary"
	"hash/crc32"
)

// castagnoli is the CRC32C table of TFRecord checksums.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// maskDelta is added to the rotated CRC by the TFRecord mask.
const maskDelta = 0xa282ead8

// maskedCRC is the TFRecord checksum of b: the CRC32C of b, rotated right by 15 bits
// and offset by maskDelta (the masking LevelDB uses, so that a CRC of bytes that
// hold CRCs stays well distributed).
func maskedCRC(b []byte) uint32 {
	c := crc32.Checksum(b, castagnoli)
	return (c>>15 | c<<17) + maskDelta
}

// recordOverhead is the bytes a TFRecord adds to its data: the length, its CRC and
// the data's CRC.
const recordOverhead = 8 + 4 + 4

// appendRecord appends data framed as one TFRecord to dst and returns the extended
// slice.
func appendRecord(dst, data []byte) []byte {
	var hdr [12]byte
	binary.LittleEndian.PutUint64(hdr[:8], uint64(len(data)))
	binary.LittleEndian.PutUint32(hdr[8:], maskedCRC(hdr[:8]))
	dst = append(dst, hdr[:]...)
	dst = append(dst, data...)
	return binary.LittleEndian.AppendUint32(dst, maskedCRC(data))
}
