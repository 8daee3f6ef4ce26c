package main

import "worker-orcd/backend/cuda"

// The GPU check of doctor reads backend/cuda's Probe through gpuProbe, so that
// its tests can run against a fake GPU.
func init() { gpuProbe = probeCUDA }

// probeCUDA adapts cuda.Probe. Probe returns what it found even with an
// error: the devices are listed when the driver loaded but NVRTC did not.
func probeCUDA(libDir string) (*gpuReport, error) {
	res, err := cuda.Probe(libDir)
	if res == nil {
		return nil, err
	}
	rep := &gpuReport{DriverVersion: res.DriverVersion, NVRTCVersion: res.NVRTCVersion}
	for _, l := range res.Libraries {
		rep.Libraries = append(rep.Libraries, gpuLibrary{Name: l.Name, Path: l.Path, Err: l.Err})
	}
	for _, d := range res.Devices {
		rep.Devices = append(rep.Devices, gpuDevice{Index: d.Index, Name: d.Name, Major: d.Major, Minor: d.Minor,
			TotalBytes: d.TotalBytes, FreeBytes: d.FreeBytes})
	}
	return rep, err
}
