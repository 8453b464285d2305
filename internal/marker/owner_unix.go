//go:build unix

package marker

import (
	"io/fs"
	"syscall"
)

// owner returns the uid that owns the file.
func owner(fi fs.FileInfo) (int, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return int(st.Uid), true // #nosec G115 -- a uid fits an int on every unix Go supports
}
