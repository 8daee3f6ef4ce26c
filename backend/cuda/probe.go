package cuda

import "fmt"

// DeviceInfo describes one GPU.
type DeviceInfo struct {
	Index      int    `json:"index"`
	Name       string `json:"name"`
	Major      int    `json:"major"` // compute capability
	Minor      int    `json:"minor"`
	TotalBytes int64  `json:"total_bytes"`
	FreeBytes  int64  `json:"free_bytes"`
}

// ProbeResult is what Probe found: which libraries loaded from where, the
// driver version and the GPUs.
type ProbeResult struct {
	Libraries     []LibraryAttempt `json:"libraries"`
	DriverVersion int              `json:"driver_version"` // e.g. 13000 for CUDA 13.0
	NVRTCVersion  string           `json:"nvrtc_version"`
	Devices       []DeviceInfo     `json:"devices"`
}

// Probe loads the driver and NVRTC (searching libDir first when given) and
// lists the GPUs with their free memory. The error says which library could
// not be loaded and which paths were tried; the result holds the attempts
// either way.
func Probe(libDir string) (*ProbeResult, error) {
	res := &ProbeResult{}
	att, err := loadDriver(libDir)
	res.Libraries = append(res.Libraries, att...)
	if err != nil {
		return res, err
	}
	var v int32
	drv.cuDriverGetVersion(&v)
	res.DriverVersion = int(v)
	natt, nerr := loadNVRTC(libDir)
	res.Libraries = append(res.Libraries, natt...)
	if nerr == nil {
		res.NVRTCVersion = nvrtcVersion()
	}
	var n int32
	if err := check("cuDeviceGetCount", drv.cuDeviceGetCount(&n)); err != nil {
		return res, err
	}
	for i := range int(n) {
		d, err := OpenDevice(i, libDir)
		if err != nil {
			return res, fmt.Errorf("cuda: GPU %d: %w", i, err)
		}
		free, total, err := d.MemInfo()
		if cerr := d.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return res, err
		}
		res.Devices = append(res.Devices, DeviceInfo{Index: i, Name: d.Name, Major: d.Major, Minor: d.Minor, TotalBytes: total, FreeBytes: free})
	}
	if nerr != nil {
		return res, nerr
	}
	return res, nil
}
