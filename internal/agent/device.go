package agent

import (
	"errors"
	"fmt"
	"io"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Device is the block-device I/O the deploy and clean code needs. FileDevice
// implements it for block devices and for regular files (disk images in
// tests).
type Device interface {
	io.ReaderAt
	io.WriterAt
	// Size returns the device size in bytes.
	Size() int64
	// Discard tells the device that [off, off+n) is unused. It returns
	// ErrDiscardUnsupported when the device cannot discard.
	Discard(off, n int64) error
	// Sync flushes written data to the device.
	Sync() error
	// Close releases the device.
	Close() error
}

// ErrDiscardUnsupported is returned by Device.Discard when the device has no
// discard support.
var ErrDiscardUnsupported = errors.New("discard not supported")

// FileDevice is a Device backed by an open block device or regular file.
type FileDevice struct {
	f       *os.File
	size    int64
	regular bool
}

var _ Device = (*FileDevice)(nil)

// OpenDevice opens path for reading and writing.
func OpenDevice(path string) (*FileDevice, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("agent: open %s: %w", path, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("agent: stat %s: %w", path, err)
	}
	size, err := f.Seek(0, io.SeekEnd) // works for block devices too
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("agent: size of %s: %w", path, err)
	}
	return &FileDevice{f: f, size: size, regular: fi.Mode().IsRegular()}, nil
}

// ReadAt implements io.ReaderAt.
func (d *FileDevice) ReadAt(p []byte, off int64) (int, error) { return d.f.ReadAt(p, off) }

// WriteAt implements io.WriterAt; writes past the end of the device fail.
func (d *FileDevice) WriteAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > d.size {
		return 0, fmt.Errorf("agent: write of %d bytes at %d past the end of the device (%d bytes)", len(p), off, d.size)
	}
	return d.f.WriteAt(p, off)
}

// Size returns the device size in bytes.
func (d *FileDevice) Size() int64 { return d.size }

// Discard issues BLKDISCARD on block devices and punches a hole in regular
// files (which then read back as zeros).
func (d *FileDevice) Discard(off, n int64) error {
	if d.regular {
		err := unix.Fallocate(int(d.f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n)
		if errors.Is(err, unix.EOPNOTSUPP) {
			return ErrDiscardUnsupported
		}
		return err
	}
	r := [2]uint64{uint64(off), uint64(n)}
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, d.f.Fd(), unix.BLKDISCARD, uintptr(unsafe.Pointer(&r)))
	switch errno {
	case 0:
		return nil
	case unix.EOPNOTSUPP, unix.ENOTTY, unix.EINVAL, unix.ENOSYS:
		return ErrDiscardUnsupported
	default:
		return fmt.Errorf("agent: BLKDISCARD: %w", errno)
	}
}

// Sync flushes the device.
func (d *FileDevice) Sync() error { return d.f.Sync() }

// Close closes the device.
func (d *FileDevice) Close() error { return d.f.Close() }
