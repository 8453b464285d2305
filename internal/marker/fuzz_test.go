package marker

import (
	"errors"
	"testing"
)

// FuzzEnv: any LIVE_FILE and LIVE_MAX_AGE either parse into a usable
// configuration or give an error matching ErrUsage; nothing panics.
func FuzzEnv(f *testing.F) {
	f.Add("/tmp/live", "30s", true, true)
	f.Add("", "", true, true)
	f.Add("x", "-5s", true, true)
	f.Add("x", "9999999999h", false, true)
	f.Fuzz(func(t *testing.T, file, maxAge string, setFile, setAge bool) {
		path, age, err := Env(func(k string) (string, bool) {
			switch k {
			case "LIVE_FILE":
				return file, setFile
			case "LIVE_MAX_AGE":
				return maxAge, setAge
			}
			return "", false
		})
		if err == nil {
			err = Validate(path, age)
		}
		if err != nil {
			if !errors.Is(err, ErrUsage) {
				t.Fatalf("error %v does not match ErrUsage", err)
			}
			return
		}
		if path == "" || age < 0 {
			t.Fatalf("accepted path %q, max age %s", path, age)
		}
	})
}
