/* ONNX export of the backbone for inference elsewhere (onnxruntime, TensorRT, ...).
 *
 * The graph is the backbone in evaluation mode, op for op: Conv (no bias), BatchNormalization
 * with the running statistics as inputs (inference form, epsilon = m->bn_eps), Relu, Add,
 * MaxPool, GlobalAveragePool and Flatten. Opset 13, IR version 7. Input "input" float
 * (batch, 3, H, W); output "features" float (batch, feat_dim). The batch dimension is
 * symbolic ("batch"); H and W are symbolic ("height", "width") unless image_size > 0 fixes
 * them. Initializers carry torchvision's tensor names ("layer1.0.conv1.weight").
 *
 * The file is written with protobuf-c from ONNX's own schema (proto/onnx.proto, the
 * onnx.proto of Debian's python3-onnx 1.12), atomically (temporary file + rename). */
#ifndef BARLOW_ONNX_H
#define BARLOW_ONNX_H
#include "barlow/model.h"

#define BT_ONNX_OPSET 13
#define BT_ONNX_IR_VERSION 7

/* Errors (BT_EIO naming the path, BT_ENOMEM) leave no file behind. */
int bt_onnx_export(const bt_model *m, const char *path, int image_size);

#endif
