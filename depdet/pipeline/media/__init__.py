"""Media decoding and resampling: container probing, audio, video frames on the feature timeline, input discovery."""
