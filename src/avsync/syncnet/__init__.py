"""SyncNet v2 compatibility: MFCC, 25-fps decoding, face crops, scoring (torch only in score/run)."""
