package testutil

import (
	"io"
	"net/http"
	"testing"
)

// GetParallel is a benchmark's load: b.RunParallel GETs of url over one
// keep-alive pool (64 connections per host, as a proxy's), each response
// read to its end. It resets the timer and reports allocations.
func GetParallel(b *testing.B, url string) {
	b.Helper()
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := client.Get(url)
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
}
