"""The contract between layers and the int8 TFLite writer: ops built under a name scope called `FLOAT_SCOPE`
(`with keras.name_scope(FLOAT_SCOPE): ...` inside a layer's `call`) stay float32 in a full-integer int8 file
(`mtmm_keras.export.tflite_writer`), while the rest of the model is quantized. `LogMelSpectrogram` uses it."""

FLOAT_SCOPE = "int8_keep_float"
