cd "$(dirname "$0")/.."; mkdir -p ${FCN_OUT:-/tmp/fcn_models}
T=../shared/media/train; S=../shared/media/speech
F1="grid_bbaf2n grid_brbk7n grid_lbax4n grid_lbbc2a grid_lrwp9a grid_lwbsza grid_id2_vcd_swwp2s lrs2_demo_00001 lrs2_demo_00004"
F2="sadtalker_RD_Radio2_000 sadtalker_WDA_AlexandriaOcasioCortez_000 sadtalker_WDA_KatieHill_000 vretalk_face1 vretalk_face2 vretalk_face3 aniportrait_pose_ref_video"
F3="syncnet_example lrs2_demo_00008 lrs2_demo_00016 lrs2_demo_00022 visualvoice_noisy_restaurant ave_0lFf-HP86Q0"
run() { name=$1; shift; STEPS=${STEPS:-1200}; /usr/bin/time -v nice -n 2 env PYTHONPATH=src python3 -m avsync train --cache ${FCN_CACHE:-/tmp/fcn_cache} --out ${FCN_OUT:-/tmp/fcn_models}/$name.pt --steps $STEPS "$@" > ${FCN_OUT:-/tmp/fcn_models}/$name.log 2>&1; }
case $1 in
pool) run pool --model fcn --data $T ${FCN_EXTRA} ;;
f1) run fold1 --model fcn ${FCN_EXTRA} --data $T $S --exclude syncnet_example grid_s1 $F1 ;;
f2) run fold2 --model fcn ${FCN_EXTRA} --data $T $S --exclude syncnet_example hdtf_WDA_AlexandriaOcasioCortez hdtf_RD_Radio $F2 ;;
f3) run fold3 --model fcn ${FCN_EXTRA} --data $T $S --exclude $F3 ;;
esac
